// Writes dist/index.mjs: an ES module re-exporting the CommonJS build by name,
// so `import { BatchNorm2d } from 'bnkit'` and `require('bnkit')` share one
// instance of the addon and one set of classes.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const dist = path.join(__dirname, '..', 'dist');
const names = Object.keys(require(path.join(dist, 'index.js'))).filter((n) => n !== 'default' && n !== '__esModule');
const body =
  `import cjs from './index.js';\n` +
  `export const { ${names.join(', ')} } = cjs;\n` +
  `export default cjs;\n`;
const target = path.join(dist, 'index.mjs');
fs.writeFileSync(`${target}.tmp`, body);
fs.renameSync(`${target}.tmp`, target);
