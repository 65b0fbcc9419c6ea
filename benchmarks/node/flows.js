// BullMQ (Node) side of benchmarks/flows.py: add a flow with FlowProducer, then run it.
//   node flows.js SHAPE --url redis://host:port/db [--children N] [--concurrency C]
// SHAPE: "wide" (one parent, N children in another queue) or "tree1000" (a top job, 10 middle
// jobs, 990 leaves: the node count of polyjobs' 1,000-node DAG, as a tree, since BullMQ flows
// cannot share a child). Leaves return 1, parents the sum of their children's values.
// Prints one line: RESULT {"add": seconds, "run": seconds, "value": top's result}.
'use strict';
const { FlowProducer, Worker } = require('bullmq');

function parseArgs(argv) {
  const args = { shape: argv[0], children: 10000, concurrency: 50 };
  for (let i = 1; i < argv.length; i += 2) args[argv[i].replace(/^--/, '')] = argv[i + 1];
  args.children = Number(args.children);
  args.concurrency = Number(args.concurrency);
  const url = new URL(args.url);
  args.connection = {
    host: url.hostname,
    port: Number(url.port || 6379),
    db: Number(url.pathname.replace('/', '') || 0),
    maxRetriesPerRequest: null,
  };
  return args;
}

function shape(args) {
  if (args.shape === 'wide') {
    const children = [];
    for (let i = 0; i < args.children; i++) {
      children.push({ name: 'leaf', queueName: 'leaves', data: { i } });
    }
    return { name: 'top', queueName: 'tops', data: {}, children };
  }
  const mids = [];
  for (let m = 0; m < 10; m++) {
    const leaves = [];
    for (let i = 0; i < 99; i++) leaves.push({ name: 'leaf', queueName: 'leaves', data: { m, i } });
    mids.push({ name: 'mid', queueName: 'tops', data: { m }, children: leaves });
  }
  return { name: 'top', queueName: 'tops', data: {}, children: mids };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const connection = args.connection;
  const flow = new FlowProducer({ connection });
  const tree = shape(args);
  let start = performance.now();
  const added = await flow.add(tree);
  const addSeconds = (performance.now() - start) / 1000;
  const topId = added.job.id;
  let resolveDone;
  const done = new Promise((resolve) => { resolveDone = resolve; });
  const leaves = new Worker('leaves', async () => 1, { connection, concurrency: args.concurrency });
  const tops = new Worker(
    'tops',
    async (job) => {
      const values = await job.getChildrenValues();
      let sum = 0;
      for (const v of Object.values(values)) sum += v;
      return sum;
    },
    { connection, concurrency: args.concurrency },
  );
  tops.on('completed', (job, value) => { if (job.id === topId) resolveDone(value); });
  start = performance.now();
  const value = await done;
  const runSeconds = (performance.now() - start) / 1000;
  process.stdout.write(
    'RESULT ' + JSON.stringify({ add: addSeconds, run: runSeconds, value }) + '\n',
    () => process.exit(0),
  );
}

main().catch((err) => { console.error(err); process.exit(1); });
