// node-opcua forcing a security policy and mode the server may not offer: connect, create and
// activate a session with a user name and password; prints one JSON line with what was refused,
// by which status, and after how many milliseconds.
// usage: node policy.mjs ENDPOINT USER PASSWORD POLICY MODE PKI_FOLDER SERVER_CERT_DER
//   (POLICY e.g. None, Basic256; MODE None|Sign|SignAndEncrypt). The server certificate is given so that
//   the client opens the channel it is told to, without first looking for a matching endpoint.
import { readFileSync } from "node:fs";
import {
  EndpointDescription, MessageSecurityMode, OPCUACertificateManager, OPCUAClient, SecurityPolicy, UserTokenType,
} from "node-opcua";

const [endpoint, userName, password, policy, mode, pki, serverCert] = process.argv.slice(2);
const certificateManager = new OPCUACertificateManager({ rootFolder: pki, automaticallyAcceptUnknownCertificate: true });
const client = OPCUAClient.create({
  applicationName: "edge-inspect-test", applicationUri: "urn:edge-inspect:node-test-client",
  securityMode: MessageSecurityMode[mode], securityPolicy: SecurityPolicy[policy],
  endpointMustExist: false, connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 200 },
  clientCertificateManager: certificateManager, requestedSessionTimeout: 10000, serverCertificate: readFileSync(serverCert),
});
const t0 = Date.now();
const out = { policy, mode };
const timeout = setTimeout(() => { console.log(JSON.stringify({ ...out, stage: "timeout", ms: Date.now() - t0 })); process.exit(3); }, 30000);
let stage = "connect";
try {
  await client.connect(endpoint);
  // As a careless or hostile client does: when the server offers no such endpoint, add a copy of the
  // first one with the forced policy and mode (its user token policies included) and go on.
  const wanted = [MessageSecurityMode[mode], SecurityPolicy[policy]];
  const served = client._serverEndpoints ?? [];
  out.served = served.map((e) => `${e.securityPolicyUri.split("#")[1]}/${MessageSecurityMode[e.securityMode]}`);
  if (served.length && !served.some((e) => e.securityMode === wanted[0] && e.securityPolicyUri === wanted[1])) {
    served.push(new EndpointDescription({ ...served[0], securityMode: wanted[0], securityPolicyUri: wanted[1] }));
    out.addedEndpoint = true;
  }
  stage = "session";
  const session = await client.createSession({ type: UserTokenType.UserName, userName, password });
  out.sessionOpened = true;
  await session.close();
} catch (err) {
  out.error = String((err && err.message) || err);
}
out.stage = stage;
out.ms = Date.now() - t0;
await client.disconnect().catch(() => {});
clearTimeout(timeout);
console.log(JSON.stringify(out));
