// BullMQ (Node) on its PostgreSQL backend, for benchmarks/postgres.py; the same modes and
// output lines as benchmarks/peers/_bench.py:
//   node bench_pg.js MODE --url postgresql://host:port/db --n N [--concurrency C] [--rate R] [--batch B]
// Default job options (completed jobs kept), an async no-op processor, BullMQ's own schema
// (migrated explicitly with runMigrations before anything else, as its docs ask).
'use strict';
const { Queue, Worker, createPostgresBackend, runMigrations } = require('bullmq');
const { Client } = require('pg');

const QUEUE = 'bench';

function parseArgs(argv) {
  const args = { mode: argv[0], concurrency: 10, rate: 200, batch: 500 };
  for (let i = 1; i < argv.length; i += 2) args[argv[i].replace(/^--/, '')] = argv[i + 1];
  for (const k of ['n', 'concurrency', 'rate', 'batch']) args[k] = Number(args[k]);
  args.connection = { connectionString: args.url };
  return args;
}

const wallNow = () => (performance.timeOrigin + performance.now()) / 1000;
const data = () => ({ t: wallNow() });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function finish(result) {
  process.stdout.write('RESULT ' + JSON.stringify(result) + '\n', () => process.exit(0));
}

async function migrate(url) {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    await runMigrations(client);
  } finally {
    await client.end();
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  await migrate(args.url);
  const { n } = args;
  if (args.mode !== 'work') {
    const queue = new Queue(QUEUE, { connection: args.connection }, createPostgresBackend);
    await queue.waitUntilReady();
    if (args.mode === 'enqueue-single') {
      const start = performance.now();
      for (let i = 0; i < n; i++) await queue.add('noop', data());
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
  }
  let count = 0;
  let first = 0;
  const latencies = [];
  const worker = new Worker(
    QUEUE,
    async (job) => {
      const now = wallNow();
      const mono = performance.now();
      count += 1;
      if (count === 1) first = mono;
      latencies.push(now - job.data.t);
      if (count === n) {
        finish({
          count,
          concurrency: args.concurrency,
          span: (mono - first) / 1000,
          rss_mb: process.memoryUsage().rss / 1048576,
          latencies,
        });
      }
    },
    { connection: args.connection, concurrency: args.concurrency },
    createPostgresBackend,
  );
  await worker.waitUntilReady();
  process.stdout.write('READY\n');
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + '\n');
  process.exit(1);
});
