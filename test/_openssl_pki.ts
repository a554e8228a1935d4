/**
 * Test helper: a throwaway PKI made with the `openssl` command line in a
 * folder the caller owns: a CA, a server certificate for 127.0.0.1 and
 * localhost, a client certificate, and a second, unrelated CA. P-256
 * keys, valid for one day.
 *
 * @module
 */
import { join } from "node:path";

/** PEM files of {@linkcode makeTestPki}, by role. */
export interface TestPki {
  /** The CA certificate that signed the server and client certificates. */
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
  /** A self-signed CA that signed nothing here: a wrong trust anchor. */
  otherCaFile: string;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command("openssl", {
      args,
      cwd: dir,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(
        "Cannot make a test PKI: openssl is not on PATH; install it " +
          "(apt-get install openssl)",
        { cause: error },
      );
    }
    throw error;
  }
  if (!output.success) {
    throw new Error(
      `openssl ${args.join(" ")} failed with code ${output.code}:\n` +
        new TextDecoder().decode(output.stderr),
    );
  }
}

const KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

/** Makes the PKI's keys and certificates in `dir`. */
export async function makeTestPki(dir: string): Promise<TestPki> {
  const selfSigned = (name: string, subject: string) =>
    openssl(dir, [
      "req",
      "-x509",
      ...KEY,
      "-nodes",
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.pem`,
      "-days",
      "1",
      "-subj",
      subject,
    ]);
  const signed = async (name: string, subject: string, ext: string) => {
    await openssl(dir, [
      "req",
      ...KEY,
      "-nodes",
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.csr`,
      "-subj",
      subject,
    ]);
    await Deno.writeTextFile(join(dir, `${name}.ext`), ext);
    await openssl(dir, [
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "1",
      "-extfile",
      `${name}.ext`,
      "-out",
      `${name}.pem`,
    ]);
  };

  await selfSigned("ca", "/CN=dptrain test CA");
  await selfSigned("other", "/CN=dptrain unrelated CA");
  await signed(
    "server",
    "/CN=localhost",
    "subjectAltName=IP:127.0.0.1,DNS:localhost\n" +
      "extendedKeyUsage=serverAuth\n",
  );
  await signed(
    "client",
    "/CN=dptrain-worker-0",
    "extendedKeyUsage=clientAuth\n",
  );
  return {
    caFile: join(dir, "ca.pem"),
    serverCertFile: join(dir, "server.pem"),
    serverKeyFile: join(dir, "server.key"),
    clientCertFile: join(dir, "client.pem"),
    clientKeyFile: join(dir, "client.key"),
    otherCaFile: join(dir, "other.pem"),
  };
}
