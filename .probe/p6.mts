import { openEndpoint, rules, RawClient } from "../test/helpers/egress.js";
const t = await openEndpoint({ allow: rules(`api.test:80`) });
const client = await RawClient.open(t.socketPath);
const t0 = Date.now();
client.write("GET http://api.test/ HTTP/1.1\r\nHost: a");
const drip = setInterval(() => { if (!client.isClosed) client.write("a"); }, 1000);
const poll = setInterval(() => {
  if (client.pending.length > 0 || client.isClosed) {
    clearInterval(drip); clearInterval(poll);
    console.log(Math.round((Date.now() - t0) / 1000), "s:", JSON.stringify(client.pending.toString().slice(0, 60)), JSON.stringify(t.audit));
    process.exit(0);
  }
}, 100);
