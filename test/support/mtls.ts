import { execFileSync } from "node:child_process";
import { writeFile } from "node:fs/promises";
import path from "node:path";

export interface MtlsFiles {
  ca: string;
  /** Server certificate and key, for 127.0.0.1 and localhost. */
  serverCert: string;
  serverKey: string;
  /** A client certificate and key signed by the same CA. */
  clientCert: string;
  clientKey: string;
}

const openssl = (args: string[]) => execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });

/** `openssl req` options for a fresh EC P-256 key, unencrypted, written to keyFile. */
export function newEcKey(keyFile: string): string[] {
  return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", keyFile];
}

function keyAndCsr(dir: string, name: string, cn: string): { key: string; csr: string } {
  const key = path.join(dir, `${name}.key`);
  const csr = path.join(dir, `${name}.csr`);
  openssl(["req", "-new", ...newEcKey(key), "-out", csr, "-subj", `/CN=${cn}`]);
  return { key, csr };
}

/** A test CA with one server and one client certificate (openssl, EC P-256, two days). */
export async function makeMtls(dir: string, prefix: string): Promise<MtlsFiles> {
  const ca = path.join(dir, `${prefix}-ca.pem`);
  const caKey = path.join(dir, `${prefix}-ca.key`);
  openssl(["req", "-x509", ...newEcKey(caKey), "-out", ca, "-days", "2", "-subj", `/CN=${prefix} test CA`]);
  const sign = async (name: string, csr: string, ext: string) => {
    const extFile = path.join(dir, `${prefix}-${name}.ext`);
    await writeFile(extFile, `${ext}\n`);
    const cert = path.join(dir, `${prefix}-${name}.pem`);
    openssl([
      "x509",
      "-req",
      "-in",
      csr,
      "-CA",
      ca,
      "-CAkey",
      caKey,
      "-CAcreateserial",
      "-out",
      cert,
      "-days",
      "2",
      "-extfile",
      extFile,
    ]);
    return cert;
  };
  const server = keyAndCsr(dir, `${prefix}-server`, "127.0.0.1");
  const serverCert = await sign(
    "server",
    server.csr,
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth",
  );
  const client = keyAndCsr(dir, `${prefix}-client`, `${prefix}-client`);
  const clientCert = await sign("client", client.csr, "extendedKeyUsage=clientAuth");
  return { ca, serverCert, serverKey: server.key, clientCert, clientKey: client.key };
}
