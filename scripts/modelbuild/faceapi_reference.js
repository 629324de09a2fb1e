// JavaScript reference descriptors: @vladmandic/face-api's own faceRecognitionNet, run in node.
//
//   node faceapi_reference.js <jsref dir> <model dir> <chips.raw> <count> <out.raw>
//
// chips.raw: count x 150 x 150 x 3 uint8, RGB (face-api's colour order). out.raw: count x 128 float32
// (little-endian). Called by faceapi_js.py; never touches the network (weights come from <model dir>).
// dist/face-api.node-wasm.js is loaded with require: the bundled ESM build fails in node ("TextEncoder is not
// a constructor") and tfjs-node needs a libtensorflow download that cannot be reached.
'use strict';

const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');

async function main() {
  const [jsref, modelDir, chipsPath, countArg, outPath] = process.argv.slice(2);
  const count = Number(countArg);
  const req = createRequire(path.join(path.resolve(jsref), 'package.json'));
  const faceapi = req('@vladmandic/face-api/dist/face-api.node-wasm.js');
  const { tf } = faceapi;
  // cpu: plain JS float32 kernels, no .wasm file to locate, same result on every machine
  await tf.setBackend('cpu');
  await tf.ready();
  await faceapi.nets.faceRecognitionNet.loadFromDisk(modelDir);
  const side = 150;
  const chips = fs.readFileSync(chipsPath);
  if (chips.length !== count * side * side * 3) {
    throw new Error(`chips file has ${chips.length} bytes, expected ${count} x ${side}x${side}x3`);
  }
  const out = new Float32Array(count * 128);
  for (let i = 0; i < count; i++) {
    const pixels = new Int32Array(chips.subarray(i * side * side * 3, (i + 1) * side * side * 3));
    const image = tf.tensor3d(pixels, [side, side, 3], 'int32');
    const descriptor = await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(image);
    image.dispose();
    out.set(descriptor, i * 128);
  }
  fs.writeFileSync(outPath, Buffer.from(out.buffer));
  console.log(`  [js] face-api ${faceapi.version} tfjs ${tf.version_core} backend ${tf.getBackend()}: ${count} descriptors`);
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(1);
});
