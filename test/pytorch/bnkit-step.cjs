// Half of the PyTorch cross-check (see torch-check.py): builds cnn-bn (seed 0),
// saves it as <dir>/model.bnk, runs two SGD steps on the first 64 MNIST
// training images and dumps the first step's logits, loss and gradients and
// the state after both steps to <dir>/dump.json + <dir>/dump.bin.
// Usage: node test/pytorch/bnkit-step.cjs DIR   (needs npm run build:ts)
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const b = require(path.join(__dirname, '..', '..', 'dist', 'index.js'));

const dir = process.argv[2];
if (!dir) throw new Error('usage: node test/pytorch/bnkit-step.cjs DIR');
fs.mkdirSync(dir, { recursive: true });
const data = b.loadMnist(undefined, { limit: 64, testLimit: 1 });
const model = b.buildModel('cnn-bn', { seed: 0 });
model.save(path.join(dir, 'model.bnk'));
const optimizer = new b.SGD(model, { lr: 0.05, momentum: 0.9, weightDecay: 1e-4 });
const loss = new b.CrossEntropyLoss();
const index = {};
const arrays = [];
let offset = 0;
const put = (name, values) => {
  index[name] = { offset, length: values.length };
  arrays.push(Float32Array.from(values));
  offset += values.length;
};
for (let step = 0; step < 2; step++) {
  optimizer.zeroGrad();
  const logits = model.forward(data.train.inputs);
  const value = loss.forward(logits, data.train.labels);
  model.backward(loss.backward());
  if (step === 0) {
    put('logits', logits.data);
    index.loss = value;
    for (const p of model.parameters()) put(`grad:${p.name}`, p.grad);
  }
  optimizer.step();
}
for (const [name, t] of Object.entries(model.stateDict())) put(`after:${name}`, t.data);
const all = new Float32Array(offset);
let at = 0;
for (const a of arrays) {
  all.set(a, at);
  at += a.length;
}
fs.writeFileSync(path.join(dir, 'dump.bin'), new Uint8Array(all.buffer));
fs.writeFileSync(path.join(dir, 'dump.json'), JSON.stringify(index));
console.log(`bnkit: loss ${index.loss}; wrote ${dir}/model.bnk and dump.*`);
