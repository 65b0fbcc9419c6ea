// BullMQ (Node) side of the polyjobs benchmark; driven by benchmarks/run.py with the same
// modes and output lines as benchmarks/peers/_bench.py:
//   node bench.js MODE --url redis://host:port/db --n N [--concurrency C] [--rate R] [--batch B]
// Default job options (completed jobs kept), an async no-op processor.
'use strict';
const { Queue, Worker } = require('bullmq');

const QUEUE = 'bench';

function parseArgs(argv) {
  const args = { mode: argv[0], concurrency: 10, rate: 200, batch: 500 };
  for (let i = 1; i < argv.length; i += 2) args[argv[i].replace(/^--/, '')] = argv[i + 1];
  for (const k of ['n', 'concurrency', 'rate', 'batch']) args[k] = Number(args[k]);
  const url = new URL(args.url);
  args.connection = {
    host: url.hostname,
    port: Number(url.port || 6379),
    db: Number(url.pathname.replace('/', '') || 0),
    maxRetriesPerRequest: null,
  };
  return args;
}

const wallNow = () => (performance.timeOrigin + performance.now()) / 1000;
const data = () => ({ t: wallNow() });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// process CPU seconds (user + system, all threads) since `since`
function cpuSeconds(since) {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1e6;
}

function finish(result) {
  process.stdout.write('RESULT ' + JSON.stringify(result) + '\n', () => process.exit(0));
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const queue = new Queue(QUEUE, { connection: args.connection });
  const { n } = args;
  if (args.mode === 'enqueue-single') {
    const start = performance.now();
    const cpu = process.cpuUsage();
    for (let i = 0; i < n; i++) await queue.add('noop', data());
    return finish({ elapsed: (performance.now() - start) / 1000, cpu: cpuSeconds(cpu) });
  }
  if (args.mode === 'enqueue-inflight') {
    let left = n;
    const adder = async () => {
      while (left > 0) {
        left -= 1;
        await queue.add('noop', data());
      }
    };
    const start = performance.now();
    await Promise.all(Array.from({ length: 50 }, adder));
    return finish({ elapsed: (performance.now() - start) / 1000 });
  }
  if (args.mode === 'enqueue-bulk' || args.mode === 'fill') {
    const start = performance.now();
    for (let done = 0; done < n; done += args.batch) {
      const size = Math.min(args.batch, n - done);
      await queue.addBulk(Array.from({ length: size }, () => ({ name: 'noop', data: data() })));
    }
    return finish({ elapsed: (performance.now() - start) / 1000, how: 'addBulk' });
  }
  if (args.mode === 'produce') {
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      const delay = start + (i * 1000) / args.rate - performance.now();
      if (delay > 0) await sleep(delay);
      await queue.add('noop', data());
    }
    return finish({});
  }
  // work
  let count = 0;
  let first = 0;
  let cpuFirst = null;
  const latencies = [];
  const worker = new Worker(
    QUEUE,
    async (job) => {
      const now = wallNow();
      const mono = performance.now();
      count += 1;
      if (count === 1) {
        first = mono;
        cpuFirst = process.cpuUsage();
      }
      latencies.push(now - job.data.t);
      if (count === n) {
        finish({
          count,
          concurrency: args.concurrency,
          span: (mono - first) / 1000,
          cpu_span: cpuSeconds(cpuFirst),
          rss_mb: process.memoryUsage().rss / 1048576,
          latencies,
        });
      }
    },
    { connection: args.connection, concurrency: args.concurrency },
  );
  await worker.waitUntilReady();
  process.stdout.write('READY\n');
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + '\n');
  process.exit(1);
});
