// Runs the original face-api.js FaceExpressionNet (tfjs-core CPU backend) on raw RGB crops and
// prints their probabilities as JSON: the reference that the PyTorch port is checked against.
// usage: node faceapi_reference.js MODEL_DIR INPUT.bin N SIZE   (INPUT.bin: N*SIZE*SIZE*3 uint8, HWC)
const fs = require('fs');
const path = require('path');
const faceapi = require('face-api.js');
const tf = require('@tensorflow/tfjs-core');

async function main() {
  const [modelDir, input, n, size] = process.argv.slice(2);
  const manifest = JSON.parse(fs.readFileSync(path.join(modelDir, 'face_expression_model-weights_manifest.json')));
  const buffers = manifest[0].paths.map((p) => fs.readFileSync(path.join(modelDir, p)));
  const all = Buffer.concat(buffers);
  const weightMap = tf.io.decodeWeights(all.buffer.slice(all.byteOffset, all.byteOffset + all.length),
                                        manifest[0].weights);
  const net = new faceapi.FaceExpressionNet();
  net.loadFromWeightMap(weightMap);
  const raw = fs.readFileSync(input);
  const s = Number(size);
  const out = [];
  for (let i = 0; i < Number(n); i++) {
    const pixels = new Int32Array(raw.subarray(i * s * s * 3, (i + 1) * s * s * 3));
    const image = tf.tensor3d(pixels, [s, s, 3], 'int32');
    const result = await net.predictExpressions(image);
    out.push(faceapi.FACE_EXPRESSION_LABELS.map((label) => result[label]));
    image.dispose();
  }
  process.stdout.write(JSON.stringify({ labels: faceapi.FACE_EXPRESSION_LABELS, probabilities: out }));
}
main().catch((e) => { console.error(e); process.exit(1); });
