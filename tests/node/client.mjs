// An independent OPC UA client for the tests (node-opcua): browse the VisionSystem, subscribe to
// result events, call StartSingleJob, wait for the event, read LastResult; prints one JSON line.
// usage: node client.mjs ENDPOINT USER PASSWORD NAMESPACE_URI PKI_FOLDER
import {
  AttributeIds, ClientSubscription, constructEventFilter, DataType, MessageSecurityMode,
  OPCUACertificateManager, OPCUAClient, SecurityPolicy, UserTokenType,
} from "node-opcua";

const [endpoint, userName, password, nsUri, pki] = process.argv.slice(2);
const out = {};
const certificateManager = new OPCUACertificateManager({ rootFolder: pki, automaticallyAcceptUnknownCertificate: true });
const client = OPCUAClient.create({
  applicationName: "edge-inspect-test", applicationUri: "urn:edge-inspect:node-test-client",
  securityMode: MessageSecurityMode.SignAndEncrypt, securityPolicy: SecurityPolicy.Basic256Sha256,
  endpointMustExist: false, connectionStrategy: { maxRetry: 1, initialDelay: 200 }, clientCertificateManager: certificateManager,
});
const timeout = setTimeout(() => { console.log(JSON.stringify({ error: "timeout", ...out })); process.exit(3); }, 40000);
try {
  await client.connect(endpoint);
  const session = await client.createSession({ type: UserTokenType.UserName, userName, password });
  const ns = (await session.readNamespaceArray()).indexOf(nsUri);
  const id = (path) => `ns=${ns};s=${path}`;
  const browse = async (path) => (await session.browse(id(path))).references.map((r) => r.browseName.name);
  out.system = await browse("VisionSystem");
  out.stateMachine = await browse("VisionSystem/VisionSystemStateMachine");
  out.lastResult = await browse("VisionSystem/ResultManagement/LastResult");
  out.state = (await session.read({ nodeId: id("VisionSystem/VisionSystemStateMachine/CurrentState") })).value.value.text;

  const fields = ["EventType", "Message", `${ns}:JobId`, `${ns}:ResultId`, `${ns}:PartId`, `${ns}:Verdict`, `${ns}:DefectCount`];
  const subscription = ClientSubscription.create(session, { requestedPublishingInterval: 50, publishingEnabled: true });
  const events = [];
  const item = await subscription.monitor(
    { nodeId: id("VisionSystem"), attributeId: AttributeIds.EventNotifier },
    { queueSize: 10, filter: constructEventFilter(fields) }, 0);
  item.on("changed", (values) => events.push(Object.fromEntries(fields.map((f, i) => [f.split(":").pop(), values[i].value]))));
  await new Promise((r) => setTimeout(r, 300));

  const call = await session.call({
    objectId: id("VisionSystem/VisionSystemStateMachine"), methodId: id("VisionSystem/VisionSystemStateMachine/StartSingleJob"),
    inputArguments: [{ dataType: DataType.String, value: "NODE-1" }, { dataType: DataType.String, value: "" }],
  });
  out.callStatus = call.statusCode.name;
  out.jobId = call.outputArguments[0]?.value;
  const deadline = Date.now() + 20000;
  while (!events.some((e) => e.JobId === out.jobId) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  out.event = events.find((e) => e.JobId === out.jobId) ?? null;
  if (out.event && typeof out.event.DefectCount !== "number") out.event.DefectCount = Number(out.event.DefectCount);
  out.verdict = (await session.read({ nodeId: id("VisionSystem/ResultManagement/LastResult/Verdict") })).value.value;
  out.partId = (await session.read({ nodeId: id("VisionSystem/ResultManagement/LastResult/PartId") })).value.value;

  const refused = await session.call({
    objectId: id("VisionSystem/RecipeManagement"), methodId: id("VisionSystem/RecipeManagement/PrepareRecipe"),
    inputArguments: [{ dataType: DataType.String, value: "1" }],
  }).then((r) => r.statusCode.name, (err) => String(err.message));
  out.prepareRecipe = refused;
  await subscription.terminate();
  await session.close();
  await client.disconnect();
  console.log(JSON.stringify(out));
  clearTimeout(timeout);
} catch (err) {
  console.log(JSON.stringify({ error: String(err && err.message || err), ...out }));
  process.exit(2);
}
