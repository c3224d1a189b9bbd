import { Buffer } from "node:buffer";

/** The frame opcodes of RFC 6455. */
export const Opcode = {
  continuation: 0x0,
  text: 0x1,
  binary: 0x2,
  close: 0x8,
  ping: 0x9,
  pong: 0xa,
} as const;

export interface EncodeFrameOptions {
  /** False starts or continues a fragmented message (default true). */
  readonly fin?: boolean;
  /** The 4-byte masking key, or false for an unmasked (server) frame; default a random key, as a client must. */
  readonly mask?: Uint8Array | false;
}

/** One frame as it came off the wire, its payload already unmasked. */
export interface WsFrame {
  readonly fin: boolean;
  readonly opcode: number;
  /** Whether the sender masked it: a client must, a server must not. */
  readonly masked: boolean;
  /** A view into the received bytes: copy it to keep it beyond the current `push()`. */
  readonly payload: Buffer;
}

/** A close frame's status code and reason. */
export interface ClosePayload {
  readonly code: number;
  readonly reason: string;
}

/** What a close payload without a status code means (RFC 6455 §7.1.5). */
const NO_STATUS = 1005;

/** One frame, header and payload in one buffer; the payload length picks the 7-, 16- or 64-bit length field. */
export function encodeFrame(
  opcode: number,
  payload: Uint8Array | string = new Uint8Array(),
  options: EncodeFrameOptions = {},
): Buffer {
  const body = typeof payload === "string" ? Buffer.from(payload, "utf8") : payload;
  const mask = options.mask ?? crypto.getRandomValues(new Uint8Array(4));
  if (mask && mask.length !== 4) throw new RangeError(`a masking key has 4 bytes, not ${mask.length}`);
  const length = body.length;
  const lengthField = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const start = 2 + lengthField + (mask ? 4 : 0);
  const frame = Buffer.allocUnsafe(start + length);
  frame[0] = ((options.fin ?? true) ? 0x80 : 0) | opcode;
  const maskBit = mask ? 0x80 : 0;
  if (lengthField === 0) {
    frame[1] = maskBit | length;
  } else if (lengthField === 2) {
    frame[1] = maskBit | 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = maskBit | 127;
    frame.writeBigUInt64BE(BigInt(length), 2);
  }
  if (!mask) {
    frame.set(body, start);
    return frame;
  }
  frame.set(mask, start - 4);
  for (let i = 0; i < length; i++) frame[start + i] = body[i] ^ mask[i & 3];
  return frame;
}

/**
 * Cuts a byte stream into frames, whatever the chunking: a frame comes out of the `push()` that completes it.
 * Masked frames are unmasked in place, so the chunks handed in are changed.
 */
export class FrameDecoder {
  #pending: Buffer | undefined;

  /**
   * The frames that `chunk` completes, in order; iterate the result at once. Leaving the loop early keeps the
   * frames not taken for the next `push()`.
   */
  *push(chunk: Buffer): Generator<WsFrame, void, undefined> {
    const data = this.#pending ? Buffer.concat([this.#pending, chunk]) : chunk;
    this.#pending = undefined;
    let offset = 0;
    try {
      for (;;) {
        const available = data.length - offset;
        if (available < 2) return;
        const first = data[offset];
        const second = data[offset + 1];
        let length = second & 0x7f;
        let header = 2;
        if (length === 126) {
          if (available < 4) return;
          length = data.readUInt16BE(offset + 2);
          header = 4;
        } else if (length === 127) {
          if (available < 10) return;
          length = Number(data.readBigUInt64BE(offset + 2));
          header = 10;
        }
        const masked = (second & 0x80) !== 0;
        const maskAt = offset + header;
        if (masked) header += 4;
        if (available < header + length) return;
        const payload = data.subarray(offset + header, offset + header + length);
        if (masked) { for (let i = 0; i < payload.length; i++) payload[i] ^= data[maskAt + (i & 3)]; }
        offset += header + length; // before the yield, so a consumer that stops here does not see the frame again
        yield { fin: (first & 0x80) !== 0, opcode: first & 0x0f, masked, payload };
      }
    } finally {
      // Keep the rest as a copy: the chunk's memory is not ours after this call.
      if (offset < data.length) this.#pending = Buffer.from(data.subarray(offset));
    }
  }
}

/** A close frame's payload: the code in two bytes, then the reason in UTF-8. */
export function encodeClosePayload(code: number, reason = ""): Buffer {
  const reasonBytes = Buffer.from(reason, "utf8");
  const payload = Buffer.allocUnsafe(2 + reasonBytes.length);
  payload.writeUInt16BE(code, 0);
  payload.set(reasonBytes, 2);
  return payload;
}

/** The code and reason of a close frame's payload; 1005 when it carries no code. Bad UTF-8 becomes U+FFFD. */
export function decodeClosePayload(payload: Buffer): ClosePayload {
  if (payload.length < 2) return { code: NO_STATUS, reason: "" };
  return { code: payload.readUInt16BE(0), reason: payload.toString("utf8", 2) };
}
