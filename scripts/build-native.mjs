#!/usr/bin/env node
// npm's install step: builds native/attrs.c (the statx attributes the immutable collector reads) with
// node-gyp. Its ~50 lines of progress are kept and printed only when the build fails, followed by the one
// line that says what the failure costs; a failed build never fails the install.
import { spawn } from 'node:child_process';

const FALLBACK = 'nodewarden: the native attrs module did not build; the immutable collector will report no data';
const TIMEOUT_MS = 10 * 60 * 1000;

const chunks = [];
// npm puts its own node-gyp on PATH for install scripts.
const child = spawn('node-gyp', ['rebuild'], { stdio: ['ignore', 'pipe', 'pipe'], timeout: TIMEOUT_MS, killSignal: 'SIGKILL' });
child.stdout.on('data', (c) => chunks.push(c));
child.stderr.on('data', (c) => chunks.push(c));
child.on('error', (err) => chunks.push(Buffer.from(`node-gyp: ${err.message}\n`)));
child.on('close', (code, signal) => {
  if (code === 0) return;
  process.stderr.write(Buffer.concat(chunks));
  if (signal) process.stderr.write(`node-gyp ended by ${signal}${signal === 'SIGKILL' ? ` (over ${TIMEOUT_MS / 60000} minutes)` : ''}\n`);
  process.stderr.write(`${FALLBACK}\n`);
});
