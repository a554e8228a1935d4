/**
 * A parser for the data literals that minified JavaScript bundles embed
 * (the nsfwjs package wraps its model.json and weight shards in
 * browserify modules): JSON plus unquoted keys, single-quoted strings,
 * numbers like `.5`, and the minifier's `!0`/`!1` for true/false. It
 * evaluates nothing: any other syntax is an error.
 *
 * @module
 */
import { WeightsFormatError } from "./errors.ts";

/** A value the parser produces. */
export type JsLiteral =
  | null
  | boolean
  | number
  | string
  | JsLiteral[]
  | { [key: string]: JsLiteral };

/**
 * Parses one literal starting at `start` in `text`. Returns the value and
 * the index just past it.
 *
 * @throws {WeightsFormatError} naming `file` and the character offset.
 */
export function parseJsLiteral(
  text: string,
  options: { start?: number; file: string },
): { value: JsLiteral; end: number } {
  const parser = new LiteralParser(text, options.file);
  parser.pos = options.start ?? 0;
  const value = parser.value();
  return { value, end: parser.pos };
}

/**
 * Finds the literal a bundle assigns to `<name>.exports=` (the first
 * such assignment whose value is an object or a string) and parses it.
 *
 * @throws {WeightsFormatError} if there is none or it does not parse.
 */
export function parseBundledExport(text: string, file: string): JsLiteral {
  const match = /\b[A-Za-z_$][\w$]*\.exports=(?=[{"'])/.exec(text);
  if (match === null) {
    throw new WeightsFormatError({
      file,
      field: "exports",
      message: "no `.exports=` assignment of an object or string literal",
    });
  }
  return parseJsLiteral(text, {
    start: match.index + match[0].length,
    file,
  }).value;
}

const IDENTIFIER = /[A-Za-z_$][\w$]*/y;
const NUMBER = /-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/y;

class LiteralParser {
  pos = 0;

  constructor(readonly text: string, readonly file: string) {}

  fail(message: string): never {
    throw new WeightsFormatError({
      file: this.file,
      field: `offset ${this.pos}`,
      message,
    });
  }

  skipSpace(): void {
    while (/\s/.test(this.text[this.pos] ?? "")) this.pos++;
  }

  value(): JsLiteral {
    this.skipSpace();
    const c = this.text[this.pos];
    if (c === "{") return this.object();
    if (c === "[") return this.array();
    if (c === '"' || c === "'") return this.string();
    if (c === "!") return this.negatedNumber();
    if (c === "-" || c === "." || (c >= "0" && c <= "9")) return this.number();

    const word = this.identifier();
    if (word === "true") return true;
    if (word === "false") return false;
    if (word === "null") return null;
    return this.fail(`unexpected ${JSON.stringify(word || c)}`);
  }

  /** The minifier writes true as `!0` and false as `!1`. */
  negatedNumber(): boolean {
    this.pos++;
    const n = this.number();
    if (n !== 0 && n !== 1) this.fail(`expected !0 or !1, got !${n}`);
    return n === 0;
  }

  number(): number {
    NUMBER.lastIndex = this.pos;
    const match = NUMBER.exec(this.text);
    if (match === null) return this.fail("expected a number");
    this.pos += match[0].length;
    return Number(match[0]);
  }

  identifier(): string {
    IDENTIFIER.lastIndex = this.pos;
    const match = IDENTIFIER.exec(this.text);
    if (match === null) return "";
    this.pos += match[0].length;
    return match[0];
  }

  string(): string {
    const quote = this.text[this.pos++];
    let out = "";
    for (;;) {
      // Weight shards are megabytes of base64: copy runs, not characters.
      const close = this.text.indexOf(quote, this.pos);
      if (close === -1) this.fail("unterminated string");
      const backslash = this.text.indexOf("\\", this.pos);
      if (backslash === -1 || backslash > close) {
        out += this.text.slice(this.pos, close);
        this.pos = close + 1;
        return out;
      }
      out += this.text.slice(this.pos, backslash);
      this.pos = backslash + 1;
      out += this.escape();
    }
  }

  escape(): string {
    const c = this.text[this.pos++];
    const simple: Record<string, string> = {
      n: "\n",
      t: "\t",
      r: "\r",
      b: "\b",
      f: "\f",
      v: "\v",
      "0": "\0",
    };
    if (c in simple) return simple[c];
    if (c === "u" || c === "x") {
      const digits = c === "u" ? 4 : 2;
      const hex = this.text.slice(this.pos, this.pos + digits);
      if (!new RegExp(`^[0-9a-fA-F]{${digits}}$`).test(hex)) {
        this.fail(`bad \\${c} escape`);
      }
      this.pos += digits;
      return String.fromCharCode(parseInt(hex, 16));
    }
    if (c === undefined) return this.fail("unterminated string");
    return c;
  }

  array(): JsLiteral[] {
    this.pos++;
    const items: JsLiteral[] = [];
    this.skipSpace();
    if (this.text[this.pos] === "]") {
      this.pos++;
      return items;
    }
    for (;;) {
      items.push(this.value());
      this.skipSpace();
      const c = this.text[this.pos++];
      if (c === "]") return items;
      if (c !== ",") this.fail("expected ',' or ']' in an array");
    }
  }

  object(): { [key: string]: JsLiteral } {
    this.pos++;
    const out: { [key: string]: JsLiteral } = {};
    this.skipSpace();
    if (this.text[this.pos] === "}") {
      this.pos++;
      return out;
    }
    for (;;) {
      const key = this.key();
      this.skipSpace();
      if (this.text[this.pos++] !== ":") this.fail("expected ':' after a key");
      // defineProperty keeps a "__proto__" key plain data, never a prototype.
      Object.defineProperty(out, key, {
        value: this.value(),
        enumerable: true,
        writable: true,
        configurable: true,
      });
      this.skipSpace();
      const c = this.text[this.pos++];
      if (c === "}") return out;
      if (c !== ",") this.fail("expected ',' or '}' in an object");
    }
  }

  key(): string {
    this.skipSpace();
    const c = this.text[this.pos];
    if (c === '"' || c === "'") return this.string();
    if (c >= "0" && c <= "9") return String(this.number());
    const word = this.identifier();
    if (word === "") this.fail("expected a key");
    return word;
  }
}
