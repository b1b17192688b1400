// A small tus server for the benchmark: @tus/server + @tus/s3-store writing to the same S3 server
// as Stowage. Configured from the environment by bench/run.sh.
import http from 'node:http';
import { Server } from '@tus/server';
import { S3Store } from '@tus/s3-store';

const env = (name, fallback) => process.env[name] ?? fallback;
const port = Number(env('PEER_PORT', '1080'));

const datastore = new S3Store({
  partSize: 8 * 1024 * 1024,
  s3ClientConfig: {
    bucket: env('PEER_BUCKET', 'peer'),
    region: 'us-east-1',
    endpoint: env('S3_ENDPOINT', 'http://127.0.0.1:9000'),
    forcePathStyle: true,
    credentials: {
      accessKeyId: env('AWS_ACCESS_KEY_ID', 'test'),
      secretAccessKey: env('AWS_SECRET_ACCESS_KEY', 'test'),
    },
  },
});

const tus = new Server({ path: '/files', datastore, respectForwardedHeaders: false });
const server = http.createServer((req, res) => tus.handle(req, res));
server.listen(port, '127.0.0.1', () => console.log(`peer listening on http://127.0.0.1:${port}`));
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
