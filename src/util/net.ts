// A free TCP port, for a rendezvous of ranks on one machine (tests, benchmarks).
import net from 'node:net';

/** A port the loopback has free now (the OS's pick); another process may take it before it is used. */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((done) => s.listen(0, '127.0.0.1', done));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((done) => s.close(done));
  return port;
}
