/**
 * Test helper: a small private network of Linux network namespaces, one per
 * "host", for tests that need real links between processes. Every node
 * namespace has an `eth0` with an address of its own, wired by a veth pair
 * to a bridge that lives in a dedicated "switch" namespace, so nothing is
 * added to or changed in the host's own namespace and interfaces:
 *
 * ```text
 *   dpt-1a2b3c-nats  eth0 10.231.N.1 ──┐
 *   dpt-1a2b3c-ps    eth0 10.231.N.2 ──┤  dpt-1a2b3c-sw: br0, one port per
 *   dpt-1a2b3c-w0    eth0 10.231.N.3 ──┤  node, named after the node
 *   dpt-1a2b3c-w1    eth0 10.231.N.4 ──┘
 * ```
 *
 * Taking a node's switch port down ({@linkcode NetnsLab.setLink}) cuts that
 * node off as a pulled cable would: its sockets stay open, packets are
 * lost, TCP retransmits.
 *
 * Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and iproute2's `ip`;
 * {@linkcode netnsUnavailableReason} says why a test must be skipped.
 *
 * @module
 */
import { join } from "node:path";

/** The private range the labs draw their /24 from. */
const SUBNET_PREFIX = "10.231";
/** Linux limits interface names to 15 bytes. */
const MAX_IFNAME_BYTES = 15;

/** An `ip` command that failed; carries its arguments and stderr. */
export class NetnsError extends Error {
  /** Always `"NetnsError"`. */
  override readonly name = "NetnsError";
  /** The arguments given to `ip`. */
  readonly args: readonly string[];
  /** What `ip` wrote to stderr. */
  readonly stderr: string;

  /** Builds the error from the failed command. */
  constructor(
    args: readonly string[],
    stderr: string,
    options?: ErrorOptions,
  ) {
    super(`Cannot run 'ip ${args.join(" ")}': ${stderr.trim()}`, options);
    this.args = args;
    this.stderr = stderr;
  }
}

/** Runs `ip ARGS`; throws {@linkcode NetnsError} on a non-zero exit. */
async function ip(...args: string[]): Promise<string> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command("ip", {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error) {
    throw new NetnsError(args, String(error), { cause: error });
  }
  const text = new TextDecoder();
  if (!output.success) throw new NetnsError(args, text.decode(output.stderr));
  return text.decode(output.stdout);
}

/** `text` as one POSIX shell word. */
function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/** A short random tag, so that concurrent labs never share a name. */
function randomTag(): string {
  return crypto.randomUUID().replaceAll("-", "").slice(0, 6);
}

/**
 * Why namespace tests cannot run here, or `null` when they can: checks
 * for root, then creates and deletes a throwaway namespace.
 */
export async function netnsUnavailableReason(): Promise<string | null> {
  if (Deno.build.os !== "linux") {
    return `network namespaces need Linux, this is ${Deno.build.os}`;
  }
  const uid = Deno.uid();
  if (uid !== 0) return `creating network namespaces needs root, uid is ${uid}`;

  const probe = `dpt-${randomTag()}-probe`;
  try {
    await ip("netns", "add", probe);
  } catch (error) {
    return `'ip netns add' failed: ${(error as Error).message}`;
  }
  await ip("netns", "del", probe);
  return null;
}

/** One host of a lab. */
export interface NetnsNode {
  /** The node's name, as given to {@linkcode createNetnsLab}. */
  readonly name: string;
  /** Its network namespace, such as `dpt-1a2b3c-w0`. */
  readonly namespace: string;
  /** The address of its `eth0` (a /24 shared by the lab). */
  readonly address: string;
}

/** A running lab; remove it with {@linkcode NetnsLab.remove}. */
export interface NetnsLab {
  /** The common prefix of the lab's namespaces, such as `dpt-1a2b3c`. */
  readonly prefix: string;
  /** The namespace holding the bridge. */
  readonly switchNamespace: string;
  /** The nodes, in the order given. */
  readonly nodes: readonly NetnsNode[];
  /** The node named `name`; throws a RangeError for an unknown name. */
  node(name: string): NetnsNode;
  /**
   * A command that runs `program` inside `node`'s namespace (through
   * `ip netns exec`, which execs it: the child's pid is the program's).
   */
  command(
    node: string,
    program: string,
    options?: Deno.CommandOptions,
  ): Deno.Command;
  /**
   * Writes an executable script that runs `program` in `node`'s namespace
   * with the script's arguments, then `extraArgs`, for APIs that take a
   * binary path; returns its path.
   */
  wrapper(
    node: string,
    program: string,
    extraArgs?: readonly string[],
  ): Promise<string>;
  /** Sets `node`'s switch port up or down (a cable plugged or pulled). */
  setLink(node: string, up: boolean): Promise<void>;
  /**
   * Deletes every namespace of the lab (their links go with them) and the
   * wrapper scripts; safe to call twice. Kill the processes running in the
   * namespaces first: a namespace outlives its name while one remains.
   */
  remove(): Promise<void>;
}

/**
 * Creates a switch namespace with a bridge and one namespace per name in
 * `nodeNames`, each linked to the bridge and given `10.231.N.(i + 1)/24`,
 * N random. On failure, whatever was created is deleted before the error
 * propagates.
 *
 * @throws {NetnsError} When an `ip` command fails.
 * @throws {RangeError} When a name is empty, repeated or too long for an
 *   interface name.
 */
export async function createNetnsLab(
  nodeNames: readonly string[],
): Promise<NetnsLab> {
  for (const [i, name] of nodeNames.entries()) {
    if (
      !/^[a-z0-9]+$/.test(name) || name.length > MAX_IFNAME_BYTES ||
      nodeNames.indexOf(name) !== i
    ) {
      throw new RangeError(
        "Cannot create a netns lab: node names must be unique, lowercase " +
          `alphanumeric and at most ${MAX_IFNAME_BYTES} characters, ` +
          `received ${JSON.stringify(name)}`,
      );
    }
  }
  if (nodeNames.length > 250) {
    throw new RangeError(
      `Cannot create a netns lab: at most 250 nodes, received ` +
        nodeNames.length,
    );
  }

  const prefix = `dpt-${randomTag()}`;
  const switchNamespace = `${prefix}-sw`;
  const subnet = `${SUBNET_PREFIX}.${Math.floor(Math.random() * 256)}`;
  const nodes = nodeNames.map((name, i) => ({
    name,
    namespace: `${prefix}-${name}`,
    address: `${subnet}.${i + 1}`,
  }));
  const created: string[] = [];
  let scriptDir: string | undefined;

  const remove = async () => {
    const failures: Error[] = [];
    // Newest first: node namespaces, then the switch.
    while (created.length > 0) {
      const namespace = created.pop() as string;
      try {
        await ip("netns", "del", namespace);
      } catch (error) {
        failures.push(error as Error);
      }
    }
    if (scriptDir !== undefined) {
      await Deno.remove(scriptDir, { recursive: true });
      scriptDir = undefined;
    }
    if (failures.length > 0) {
      throw new AggregateError(failures, `Cannot remove netns lab ${prefix}`);
    }
  };

  try {
    await ip("netns", "add", switchNamespace);
    created.push(switchNamespace);
    const sw = ["-n", switchNamespace];
    await ip(...sw, "link", "add", "br0", "type", "bridge");
    await ip(...sw, "link", "set", "br0", "up");

    for (const node of nodes) {
      await ip("netns", "add", node.namespace);
      created.push(node.namespace);
      const inNode = ["-n", node.namespace];
      // Both ends are made from the switch side: the host's namespace never
      // holds either end, not even for a moment.
      await ip(
        ...sw,
        ...["link", "add", node.name, "type", "veth"],
        ...["peer", "name", "eth0", "netns", node.namespace],
      );
      await ip(...sw, "link", "set", node.name, "master", "br0");
      await ip(...sw, "link", "set", node.name, "up");
      await ip(...inNode, "link", "set", "lo", "up");
      await ip(...inNode, "addr", "add", `${node.address}/24`, "dev", "eth0");
      await ip(...inNode, "link", "set", "eth0", "up");
    }
  } catch (error) {
    await remove();
    throw error;
  }

  const node = (name: string): NetnsNode => {
    const found = nodes.find((n) => n.name === name);
    if (found === undefined) {
      throw new RangeError(
        `Unknown netns lab node ${JSON.stringify(name)}; the lab has ` +
          nodes.map((n) => n.name).join(", "),
      );
    }
    return found;
  };

  return {
    prefix,
    switchNamespace,
    nodes,
    node,
    command: (name, program, options = {}) =>
      new Deno.Command("ip", {
        ...options,
        args: [
          ...["netns", "exec", node(name).namespace, program],
          ...(options.args ?? []),
        ],
      }),
    wrapper: async (name, program, extraArgs = []) => {
      const { namespace } = node(name);
      scriptDir ??= await Deno.makeTempDir({ prefix: `${prefix}-` });
      const path = join(scriptDir, `${name}-${program.split("/").pop()}`);
      // exec all the way down, so the script's pid becomes the program's.
      const exec = ["exec", "ip", "netns", "exec", namespace, program]
        .map(shellQuote).join(" ");
      const extra = extraArgs.map(shellQuote).join(" ");
      await Deno.writeTextFile(path, `#!/bin/sh\n${exec} "$@" ${extra}\n`, {
        mode: 0o755,
      });
      return path;
    },
    setLink: async (name, up) => {
      await ip(
        ...["-n", switchNamespace, "link", "set", node(name).name],
        up ? "up" : "down",
      );
    },
    remove,
  };
}
