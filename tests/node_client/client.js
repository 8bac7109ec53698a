// A kvstore client in Node.js, built only from what the stock Thrift compiler makes of kvstore.thrift
// and the npm thrift package: usage: KVSTORE_USER=... KVSTORE_PASSWORD=... node client.js GEN_DIR HOST PORT
// It prints one JSON line per step; tests/test_idl.py starts real nodes, runs it, and checks each line.
'use strict';
const path = require('path');
const thrift = require('thrift');

const [genDir, host, port] = process.argv.slice(2);
const KVStore = require(path.resolve(genDir, 'KVStore'));
const types = require(path.resolve(genDir, 'kvstore_types'));
const QUORUM = types.ConsistencyLevel.QUORUM;

function say(step, fields) {
  console.log(JSON.stringify(Object.assign({ step }, fields)));
}

async function main() {
  const connection = thrift.createConnection(host, Number(port), {
    transport: thrift.TFramedTransport, protocol: thrift.TBinaryProtocol, connect_timeout: 5000, timeout: 10000,
  });
  connection.on('error', (err) => { say('connection-error', { message: String(err) }); process.exit(1); });
  const kv = thrift.createClient(KVStore, connection);

  try {  // before login: a typed refusal, and the connection stays open
    await kv.get(Buffer.from('js:a'), QUORUM, 0);
    say('before-login', { raised: null });
  } catch (err) {
    say('before-login', { raised: err instanceof types.Unauthorized ? 'Unauthorized' : String(err), why: err.why });
  }
  const login = await kv.login(process.env.KVSTORE_USER, process.env.KVSTORE_PASSWORD);
  say('login', { user: login.user, role: login.role });

  const written = await kv.put(Buffer.from('js:a'), Buffer.from('from node'), QUORUM, 0);
  say('put', { timestamp: written.timestamp.toNumber(), acknowledged: written.acknowledged.length });

  const read = await kv.get(Buffer.from('js:a'), QUORUM, 0);
  say('get', { value: read.cell.value.toString(), timestamp: read.cell.timestamp.toNumber() });

  const items = [];
  for (let i = 0; i < 5; i++) items.push(new types.KeyValue({ key: Buffer.from(`js:k${i}`), value: Buffer.from(`v${i}`) }));
  const outcomes = await kv.multi_put(items, QUORUM, 0);
  say('multi_put', { ok: outcomes.filter((o) => o.result).length });

  const keys = [];
  let start = Buffer.from('js:k');
  for (;;) {  // a scan, two keys a page, resumed from resume_key until it is unset
    const page = await kv.scan(start, Buffer.from('js:l'), 2, QUORUM);
    page.items.forEach((m) => keys.push(m.key.toString()));
    if (!page.resume_key) break;
    start = page.resume_key;
  }
  say('scan', { keys });

  await kv.put(Buffer.from('js:ttl'), Buffer.from('soon gone'), QUORUM, 600);
  say('ttl', { seconds: (await kv.ttl(Buffer.from('js:ttl'), QUORUM, 0)).toNumber() });

  try {
    await kv.put(Buffer.from(''), Buffer.from('x'), QUORUM, 0);
    say('empty-key', { raised: null });
  } catch (err) {
    say('empty-key', { raised: err instanceof types.InvalidRequest ? 'InvalidRequest' : String(err), why: err.why });
  }
  connection.end();
}

main().catch((err) => { say('failed', { message: String(err && (err.why || err.message || err)) }); process.exit(1); });
