// Node's floors for benchmarks/floors.py, with ioredis (BullMQ's client):
//   node floors.js ping URL N             -> RESULT <µs per sequential PING>
//   node floors.js consume URL N          -> READY, then RESULT [seconds late per item]
//   node floors.js produce URL N RATE     (LPUSH its wall-clock time RATE times a second)
'use strict';
const Redis = require('ioredis');

const KEY = 'polyjobs-floors';
const wallNow = () => (performance.timeOrigin + performance.now()) / 1000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function done(result) {
  process.stdout.write('RESULT ' + JSON.stringify(result) + '\n', () => process.exit(0));
}

async function main() {
  const [mode, url, nText, rateText] = process.argv.slice(2);
  const n = Number(nText);
  const redis = new Redis(url, { maxRetriesPerRequest: null });
  if (mode === 'ping') {
    await redis.ping();
    const start = performance.now();
    for (let i = 0; i < n; i++) await redis.ping();
    return done(((performance.now() - start) * 1000) / n);
  }
  if (mode === 'consume') {
    await redis.del(KEY);
    process.stdout.write('READY\n');
    const late = [];
    while (late.length < n) {
      const reply = await redis.blpop(KEY, 10);
      if (reply === null) break;
      late.push(wallNow() - Number(reply[1]));
    }
    return done(late);
  }
  const rate = Number(rateText);
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const pause = start + (i * 1000) / rate - performance.now();
    if (pause > 0) await sleep(pause);
    await redis.lpush(KEY, String(wallNow()));
  }
  await redis.quit();
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + '\n');
  process.exit(1);
});
