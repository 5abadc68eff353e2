// An independent OPC UA client for the tests (node-opcua), written against OPC 40100-1 only: it finds
// the VisionSystem by its type (VisionSystemType) and every node below it by the specification's
// browse names, then runs a cycle: PrepareRecipe → StartSingleJob → ResultReadyEvent → GetResultById;
// plus the argument checks (an Int32 PartId, a missing argument) and an operator's refused PrepareRecipe.
// Prints one JSON line.
// usage: node client.mjs ENDPOINT USER PASSWORD OPERATOR OPERATOR_PASSWORD PKI_FOLDER
import {
  AttributeIds, BrowseDirection, ClientSubscription, constructEventFilter, DataType, makeBrowsePath,
  MessageSecurityMode, NodeClassMask, OPCUACertificateManager, OPCUAClient, resolveNodeId, SecurityPolicy, UserTokenType,
  VariantArrayType,
} from "node-opcua";

const MV = "http://opcfoundation.org/UA/MachineVision";
const [endpoint, userName, password, opName, opPassword, pki] = process.argv.slice(2);
const out = {};
const certificateManager = new OPCUACertificateManager({ rootFolder: pki, automaticallyAcceptUnknownCertificate: true });
const client = OPCUAClient.create({
  applicationName: "edge-inspect-test", applicationUri: "urn:edge-inspect:node-test-client",
  securityMode: MessageSecurityMode.SignAndEncrypt, securityPolicy: SecurityPolicy.Basic256Sha256,
  endpointMustExist: false, connectionStrategy: { maxRetry: 1, initialDelay: 200 }, clientCertificateManager: certificateManager,
});
const timeout = setTimeout(() => { console.log(JSON.stringify({ error: "timeout", ...out })); process.exit(3); }, 60000);
const name = (v) => (v && v.value !== undefined ? v.value : v);

try {
  await client.connect(endpoint);
  const session = await client.createSession({ type: UserTokenType.UserName, userName, password });
  const mv = (await session.readNamespaceArray()).indexOf(MV);
  const type = (i) => resolveNodeId(`ns=${mv};i=${i}`);
  // the VisionSystem: the object below Objects whose type is VisionSystemType (ns=MV;i=1003)
  const objects = await session.browse({
    nodeId: "i=85", browseDirection: BrowseDirection.Forward, nodeClassMask: NodeClassMask.Object, resultMask: 63,
  });
  const system = objects.references.find((r) => r.typeDefinition.toString() === type(1003).toString());
  out.systemType = system && system.typeDefinition.toString();
  const resolve = async (path) => {
    const result = await session.translateBrowsePath(makeBrowsePath(system.nodeId, path.split(".").map((p) => `/${mv}:${p}`).join("")));
    if (!result.targets || !result.targets.length) throw new Error(`not found: ${path}`);
    return result.targets[0].targetId;
  };
  const children = async (path) =>
    (await session.browse(path ? await resolve(path) : system.nodeId)).references.map((r) => r.browseName.toString());
  out.system = await children("");
  out.stateMachine = await children("VisionStateMachine");
  out.automatic = await children("VisionStateMachine.AutomaticModeStateMachine");
  const readText = async (path) => (await session.read({ nodeId: await resolve(path), attributeId: AttributeIds.Value })).value.value.text;
  out.state = await session.read({ nodeId: await (async () => {
    const r = await session.translateBrowsePath(makeBrowsePath(await resolve("VisionStateMachine"), "/CurrentState"));
    return r.targets[0].targetId;
  })() }).then((d) => d.value.value.text);

  const struct = async (dataTypeId, id) => session.constructExtensionObject(type(dataTypeId), { id });
  const ext = (value) => ({ dataType: DataType.ExtensionObject, value });
  const call = async (path, inputArguments) => {
    const method = await resolve(path);
    const object = await resolve(path.split(".").slice(0, -1).join("."));
    return session.call({ objectId: object, methodId: method, inputArguments });
  };

  // events of ResultReadyEventType (the specification's fields)
  const fields = ["EventType", "Message", `${mv}:ResultId`, `${mv}:JobId`, `${mv}:ResultState`, `${mv}:PartId`, `${mv}:MeasId`];
  const subscription = ClientSubscription.create(session, { requestedPublishingInterval: 50, publishingEnabled: true });
  const events = [];
  const item = await subscription.monitor(
    { nodeId: system.nodeId, attributeId: AttributeIds.EventNotifier },
    { queueSize: 10, filter: constructEventFilter(fields) }, 0);
  item.on("changed", (values) => events.push(Object.fromEntries(fields.map((f, i) => [f.split(":").pop(), values[i].value]))));
  await new Promise((r) => setTimeout(r, 300));

  const prepared = await call("RecipeManagement.PrepareRecipe", [ext(await struct(3002, "1")), ext(null)]);
  out.prepare = { status: prepared.statusCode.name, internalId: prepared.outputArguments[0]?.value?.id, isCompleted: prepared.outputArguments[1]?.value };

  const startArgs = async (partId) => [
    ext(await struct(3015, "MEAS-1")), partId, ext(await struct(3002, "")), ext(null),
    { dataType: DataType.Variant, arrayType: VariantArrayType.Array, value: [] },
  ];
  const job = await call("VisionStateMachine.AutomaticModeStateMachine.StartSingleJob", await startArgs(ext(await struct(3004, "NODE-1"))));
  out.callStatus = job.statusCode.name;
  out.jobId = job.outputArguments[0]?.value?.id;
  const deadline = Date.now() + 20000;
  const mine = () => events.find((e) => e.JobId && e.JobId.id === out.jobId);
  while (!mine() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const ev = mine();
  out.event = ev ? { resultId: ev.ResultId.id, jobId: ev.JobId.id, resultState: ev.ResultState, partId: ev.PartId?.id, measId: ev.MeasId?.id, eventType: String(ev.EventType) } : null;

  if (ev) {
    const got = await call("ResultManagement.GetResultById", [ext(await struct(3021, ev.ResultId.id)), { dataType: DataType.Int32, value: 1000 }]);
    const result = got.outputArguments[1]?.value;
    out.getResultById = { status: got.statusCode.name, resultId: result?.resultId?.id, jobId: result?.jobId?.id, partId: result?.partId?.id,
      resultState: result?.resultState, recipe: result?.internalRecipeId?.id, error: got.outputArguments[2]?.value };
  }
  // argument checks: an Int32 PartId, a missing argument
  const wrong = await call("VisionStateMachine.AutomaticModeStateMachine.StartSingleJob", await startArgs({ dataType: DataType.Int32, value: 7 }));
  out.int32PartId = { status: wrong.statusCode.name, inputs: (wrong.inputArgumentResults || []).map((s) => s.name) };
  const missing = await call("VisionStateMachine.AutomaticModeStateMachine.StartSingleJob", (await startArgs(ext(await struct(3004, "X")))).slice(0, 4));
  out.missingArgument = missing.statusCode.name;
  await subscription.terminate();
  const [rm, prepare, recipeId] = [await resolve("RecipeManagement"), await resolve("RecipeManagement.PrepareRecipe"), await struct(3002, "1")];
  await session.close();

  const opSession = await client.createSession({ type: UserTokenType.UserName, userName: opName, password: opPassword });
  const refused = await opSession.call({ objectId: rm, methodId: prepare, inputArguments: [ext(recipeId), ext(null)] })
    .then((r) => r.statusCode.name, (err) => String(err.message));
  out.operatorPrepareRecipe = refused;
  await opSession.close();
  await client.disconnect();
  console.log(JSON.stringify(out));
  clearTimeout(timeout);
} catch (err) {
  console.log(JSON.stringify({ error: String((err && err.stack) || err), ...out }));
  process.exit(2);
}
