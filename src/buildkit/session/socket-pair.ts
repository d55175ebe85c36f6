import { randomBytes } from "node:crypto";
import net from "node:net";

/**
 * Two connected kernel sockets (an abstract-namespace unix socket, Linux).
 * The session's HTTP/2 server runs on a native socket this way: on a JS
 * Duplex node:http2 falls back to a JS stream wrapper that processes every
 * 16 KiB frame in JavaScript, which dominated CPU on large contexts.
 */
export function socketPair(): Promise<[net.Socket, net.Socket]> {
  return new Promise((resolve, reject) => {
    const name = `\0arca-session-${process.pid}-${randomBytes(8).toString("hex")}`;
    const server = net.createServer({ allowHalfOpen: true });
    server.once("error", reject);
    server.once("connection", (accepted) => {
      server.close();
      resolve([accepted, client]);
    });
    let client: net.Socket;
    server.listen(name, () => {
      client = net.connect({ path: name, allowHalfOpen: true });
      client.once("error", reject);
    });
  });
}
