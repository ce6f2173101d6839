// The web device's page (issue 30, `docs/web.md`): the I/O around the WebAssembly device.
//
// The module (`treecast_web`, built by `scripts/build-web.sh`) does everything a device does
// with bytes; this page fetches them from the service it is served by (`/v1/...`), keeps the
// device in IndexedDB and hands the ClearKey license to the browser's EME. What IndexedDB keeps
// (the store `device`, written with strict durability):
//   - `wrap`: an AES-GCM key WebCrypto generated non-extractable (a `CryptoKey` object);
//   - `keys`, `credential`: the device's keys (`WebDevice.keys`) and the user's credential,
//     each encrypted with `wrap` (a fresh IV each time, the record's name bound in);
//   - `state`: the state the device sealed itself (`WebDevice.save`), after every change;
//   - `pending-license-N`, `pending-move-N`: a signed request (and a move's certificate) kept
//     until its answer is stored, in the same transaction as the state that used its nonce: a
//     retry sends the same bytes, which the service answers again without a second bill;
//   - `package-N`: a move package made, until the content comes back (a reload offers it again);
//   - in the store `media`, the Common Encryption MP4s (public: their key is the license's).
// Every action runs after the one before it (one queue), so two never interleave their saves.
// `window.treecast` exposes the actions, which the buttons call and the browser tests drive.

import init, { WebDevice } from './pkg/treecast_web.js';

const $ = (id) => document.getElementById(id);
const now = () => BigInt(Math.floor(Date.now() / 1000));
const b64url = (bytes) => btoa(String.fromCharCode(...bytes))
  .replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const toB64 = (bytes) => {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
};
const fromB64 = (text) => Uint8Array.from(atob(text.trim()), (c) => c.charCodeAt(0));

// --- IndexedDB ------------------------------------------------------------------------------

const DB = 'treecast';
function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, 1);
    request.onupgradeneeded = () => {
      request.result.createObjectStore('device');
      request.result.createObjectStore('media');
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}
const db = await openDb();
function store(name, mode, f) {
  return new Promise((resolve, reject) => {
    // Strict: complete only once on disk (Chromium's default is relaxed since 121): a move's
    // deletion must not come back after a crash once its package was handed on.
    const tx = db.transaction(name, mode, { durability: 'strict' });
    const request = f(tx.objectStore(name));
    tx.oncomplete = () => resolve(request && request.result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error('IndexedDB transaction aborted'));
  });
}
const get = (name, key) => store(name, 'readonly', (s) => s.get(key));
const put = (name, key, value) => store(name, 'readwrite', (s) => s.put(value, key));
/** Writes `entries` and deletes `gone` in the store `device`, in one transaction. */
const commit = (entries, gone = []) => store('device', 'readwrite', (s) => {
  for (const [key, value] of Object.entries(entries)) s.put(value, key);
  for (const key of gone) s.delete(key);
});

// --- secrets wrapped by a non-extractable key -----------------------------------------------

/** The associated data of a wrapped record: its name, so that two records cannot be swapped. */
const aad = (name) => new TextEncoder().encode(`treecast/web/v1/wrapped/${name}`);
async function wrapKey() {
  let key = await get('device', 'wrap');
  if (!key) {
    key = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
    await put('device', 'wrap', key);
  }
  return key;
}
async function wrap(name, bytes) {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const sealed = await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv, additionalData: aad(name) }, await wrapKey(), bytes);
  bytes.fill(0);
  return { iv, sealed: new Uint8Array(sealed) };
}
async function unwrap(name, record) {
  const key = await get('device', 'wrap');
  if (!key || !record) throw new Error(`the stored ${name} cannot be opened`);
  return new Uint8Array(await crypto.subtle.decrypt(
    { name: 'AES-GCM', iv: record.iv, additionalData: aad(name) }, key, record.sealed));
}

// --- the service ----------------------------------------------------------------------------

async function call(method, path, { body, credential } = {}) {
  const headers = {};
  if (body) headers['content-type'] = 'application/octet-stream';
  if (credential) headers.authorization = `Bearer ${credential}`;
  const response = await fetch(path, { method, body, headers, cache: 'no-store' });
  const bytes = new Uint8Array(await response.arrayBuffer());
  if (!response.ok) {
    let message = new TextDecoder().decode(bytes);
    let code = null;
    try { ({ error: code, message } = JSON.parse(message)); } catch (_) { /* as it came */ }
    const error = new Error(`${method} ${path}: ${response.status} ${message}`);
    error.code = code;
    throw error;
  }
  return { bytes, headers: response.headers };
}

// --- the device -----------------------------------------------------------------------------

let device = null;
let credential = null;

async function save() {
  await put('device', 'state', device.save());
}

/** Takes the authority's newest list of `server`'s keys (a retired key's objects are refused). */
async function refreshServerKeys(server) {
  const { bytes } = await call('GET', `/v1/servers/${server}/keys`);
  if (bytes.length) device.update_server_keys(bytes);
}

/** Fetches the EKB the license of `content` needs if the device lacks it. */
async function complete(content) {
  const epoch = device.missing_ekb(content);
  if (epoch !== undefined) device.store_ekb((await call('GET', `/v1/ekb/${epoch}`)).bytes);
}

/** Downloads `content` (public): a container into the device, an MP4 into `media`. */
async function download(content) {
  if (device.holds(content) || await get('media', String(content))) return;
  const { bytes } = await call('GET', `/v1/users/${device.user()}/contents/${content}`,
    { credential });
  if (String.fromCharCode(...bytes.subarray(4, 8)) === 'ftyp') {
    const kid = WebDevice.key_id(content);
    if (!containsBytes(bytes, kid)) throw new Error(`the MP4 downloaded for content ${content} is of another content`);
    await put('media', String(content), bytes);
  } else {
    device.store_content(bytes);
  }
}
function containsBytes(haystack, needle) {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

async function open() {
  const keys = await get('device', 'keys');
  if (!keys) return false;
  const plain = await unwrap('keys', keys);
  device = WebDevice.load(plain, await get('device', 'state')); // zeroes `plain`
  const cred = await unwrap('credential', await get('device', 'credential'));
  credential = new TextDecoder().decode(cred);
  cred.fill(0);
  device.store_ekb((await call('GET', '/v1/ekb')).bytes);
  for (const key of await store('device', 'readonly', (s) => s.getAllKeys())) {
    if (String(key).startsWith('package-')) offer(await get('device', key));
  }
  return true;
}

async function register(user, credentialHex, server) {
  if (device) throw new Error(`this browser is client ${device.id()} already (forget it first)`);
  if (await get('device', 'keys')) {
    throw new Error('a device is stored in this browser but did not open: forget it first');
  }
  // WebCrypto and EME exist only in a secure context (HTTPS, or this machine over HTTP):
  // checked before the service registers a client this page could not keep.
  if (!window.isSecureContext || !crypto.subtle) {
    throw new Error('this page needs HTTPS (or the loopback): it cannot keep a device here');
  }
  user = BigInt(user);
  credentialHex = credentialHex.trim();
  const pending = WebDevice.start_registration(
    crypto.getRandomValues(new Uint8Array(32)), user, Number(server)); // the seed is zeroed
  const { bytes } = await call('POST', `/v1/users/${user}/clients`,
    { body: pending.request(), credential: credentialHex });
  const registered = pending.finish(bytes);
  registered.store_ekb((await call('GET', '/v1/ekb')).bytes);
  await commit({
    keys: await wrap('keys', registered.keys()),
    credential: await wrap('credential', new TextEncoder().encode(credentialHex)),
    state: registered.save(),
  });
  device = registered;
  credential = credentialHex;
  return Number(device.id());
}

function needDevice() {
  if (!device) throw new Error('register this browser first');
}

async function buy(content) {
  needDevice();
  content = BigInt(content);
  await download(content);
  const name = `pending-license-${content}`;
  let request = await get('device', name);
  if (!request) {
    request = device.license_request(content, now());
    // The request's nonce is used in the state saved with it, before the request leaves.
    await commit({ state: device.save(), [name]: request });
  }
  await refreshServerKeys(device.server());
  let license;
  try {
    ({ bytes: license } = await call('POST', '/v1/licenses', { body: request }));
  } catch (e) {
    // Too old to be answered again: the next try makes a new request.
    if (e.code === 'request_stale') await commit({}, [name]);
    throw e;
  }
  device.acquire_license(license);
  await complete(content);
  await commit({ state: device.save() }, [name, `package-${content}`]);
  return Number(content);
}

async function play(content) {
  needDevice();
  content = BigInt(content);
  // Whatever played before stops first: what follows plays from this device's license or not at all.
  await stopPlayback();
  await download(content); // public: the key is what a license gives
  const mp4 = await get('media', String(content));
  if (mp4) return playVideo(content, mp4);
  const clear = device.play(content, now());
  await save(); // a window started is the device's to keep
  const image = ['\x89PNG', '\xff\xd8\xff', 'GIF8', 'RIFF']
    .some((magic) => String.fromCharCode(...clear.subarray(0, magic.length)) === magic);
  if (image) {
    const img = document.createElement('img');
    img.src = URL.createObjectURL(new Blob([clear]));
    playing.urls.push(img.src);
    $('shown').append(img);
  } else {
    const pre = document.createElement('pre');
    pre.textContent = new TextDecoder().decode(clear);
    $('shown').append(pre);
  }
  clear.fill(0);
  return { kind: image ? 'image' : 'text', bytes: clear.length };
}

/** The codecs of a (protected) MP4, for Media Source Extensions: avc1 from its avcC, mp4a. */
function codecs(mp4) {
  const found = [];
  for (let i = 0; i + 8 < mp4.length; i++) {
    if (mp4[i] === 0x61 && String.fromCharCode(...mp4.subarray(i, i + 4)) === 'avcC') {
      const hex = (b) => b.toString(16).padStart(2, '0');
      found.push(`avc1.${hex(mp4[i + 5])}${hex(mp4[i + 6])}${hex(mp4[i + 7])}`);
      break;
    }
  }
  if (containsBytes(mp4, new TextEncoder().encode('esds'))) found.push('mp4a.40.2');
  if (!found.some((c) => c.startsWith('avc1'))) throw new Error('not an H.264 MP4 this page plays');
  return found;
}

/** What plays now: its ClearKey session and the object URLs it made. */
let playing = { session: null, urls: [] };

/** Stops what plays: the video emptied, its session closed (its key unloaded), the shown cleared. */
async function stopPlayback() {
  const video = $('video');
  const { session, urls } = playing;
  playing = { session: null, urls: [] };
  video.pause();
  video.removeAttribute('src');
  video.load();
  $('shown').replaceChildren();
  for (const url of urls) URL.revokeObjectURL(url);
  if (session) await session.close().catch(() => {});
  if (video.mediaKeys) await video.setMediaKeys(null).catch(() => {});
}

async function playVideo(content, mp4) {
  const video = $('video');
  // The key first, from this device's own license: no license, no session, no playback.
  const license = device.clearkey_license(content);
  const kinds = codecs(mp4);
  const access = await navigator.requestMediaKeySystemAccess('org.w3.clearkey', [{
    initDataTypes: ['keyids', 'cenc'],
    videoCapabilities: kinds.filter((c) => c.startsWith('avc1')).map((c) => ({ contentType: `video/mp4; codecs="${c}"` })),
    audioCapabilities: kinds.filter((c) => c.startsWith('mp4a')).map((c) => ({ contentType: `audio/mp4; codecs="${c}"` })),
  }]);
  const keys = await access.createMediaKeys();
  await video.setMediaKeys(keys);
  const session = keys.createSession('temporary');
  playing.session = session;
  const keyed = new Promise((resolve, reject) => {
    session.addEventListener('message', () => {
      session.update(license).then(resolve, reject).finally(() => license.fill(0));
    }, { once: true });
  });
  const kid = WebDevice.key_id(content);
  await session.generateRequest('keyids',
    new TextEncoder().encode(JSON.stringify({ kids: [b64url(kid)] })));
  await keyed;
  const source = new MediaSource();
  video.src = URL.createObjectURL(source);
  playing.urls.push(video.src);
  await new Promise((resolve) => source.addEventListener('sourceopen', resolve, { once: true }));
  const buffer = source.addSourceBuffer(`video/mp4; codecs="${kinds.join(', ')}"`);
  buffer.appendBuffer(mp4);
  await new Promise((resolve, reject) => {
    buffer.addEventListener('updateend', resolve, { once: true });
    buffer.addEventListener('error', () => reject(new Error('the MP4 was not taken')), { once: true });
  });
  source.endOfStream();
  await video.play();
  return { kind: 'video', codecs: kinds };
}

/** Offers a move package made: a link that saves it as a file, and when it must be used by. */
function offer(record) {
  const link = $('package-link');
  if (link.href) URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(new Blob([record.package], { type: 'application/octet-stream' }));
  link.download = `move-${record.content}-to-${record.to}.tcmp`;
  link.textContent = `move package: content ${record.content} to client ${record.to}, `
    + `to move in before ${new Date(record.expires * 1000).toLocaleString()}`;
  link.hidden = false;
}

async function moveOut(content, to) {
  needDevice();
  content = BigInt(content);
  to = String(BigInt(to));
  const made = await get('device', `package-${content}`);
  if (made) {
    if (made.to !== to) throw new Error(`content ${content} moved out to client ${made.to} already`);
    offer(made);
    return toB64(made.package);
  }
  // The request, then the certificate, kept until the package is made: a retry sends the same
  // request (the service answers the same certificate) or needs no service at all.
  const name = `pending-move-${content}`;
  let pending = await get('device', name);
  if (pending && pending.to !== to) {
    throw new Error(`a move of content ${content} to client ${pending.to} is under way: move it there`);
  }
  if (!pending) {
    pending = { to, request: device.move_request(content, BigInt(to), now()) };
    await commit({ state: device.save(), [name]: pending });
  }
  if (!pending.certificate) {
    try {
      ({ bytes: pending.certificate } = await call('POST', '/v1/certificates', { body: pending.request }));
    } catch (e) {
      if (e.code === 'request_stale') await commit({}, [name]);
      throw e;
    }
    await commit({ [name]: pending });
  }
  await refreshServerKeys(WebDevice.certificate_server(pending.certificate));
  await stopPlayback();
  const record = {
    content: String(content),
    to,
    package: device.move_out(pending.certificate), // the license deleted; the same again on a retry
    expires: Number(WebDevice.certificate_expires(pending.certificate)),
  };
  // The deletion is on disk before the package is offered.
  await commit({ state: device.save(), [`package-${content}`]: record }, [name]);
  offer(record);
  return toB64(record.package);
}

async function moveIn(pkg) {
  needDevice();
  const bytes = typeof pkg === 'string' ? fromB64(pkg) : pkg;
  const content = WebDevice.package_content(bytes);
  await download(content);
  device.store_ekb((await call('GET', '/v1/ekb')).bytes);
  await refreshServerKeys(device.server());
  device.move_in(bytes, now());
  await complete(content);
  await commit({ state: device.save() }, [`package-${content}`]);
  return Number(content);
}

/**
 * The figures of `docs/performance.md`: the mean milliseconds, over `n` runs, to open the
 * current EKB (verify and store it) and to unwrap `content`'s key from this device's license
 * (the EKB opened with the device's keys, the license's key unwrapped, the sample key derived).
 */
async function timings(content, n) {
  needDevice();
  content = BigInt(content);
  const { bytes: ekb } = await call('GET', '/v1/ekb');
  let start = performance.now();
  for (let i = 0; i < n; i++) device.store_ekb(ekb);
  const ekbMs = (performance.now() - start) / n;
  start = performance.now();
  for (let i = 0; i < n; i++) device.clearkey_license(content).fill(0);
  const keyMs = (performance.now() - start) / n;
  return { ekbMs, keyMs, ekbBytes: ekb.length, runs: n };
}

function status() {
  return device ? JSON.parse(device.status()) : null;
}

async function forget() {
  await stopPlayback();
  await store('device', 'readwrite', (s) => s.clear());
  await store('media', 'readwrite', (s) => s.clear());
  if (device) device.free();
  device = null;
  credential = null;
  $('package-link').hidden = true;
}

// --- the page -------------------------------------------------------------------------------

function log(message, error = false) {
  const li = document.createElement('li');
  li.textContent = `${new Date().toLocaleTimeString()} ${message}`;
  if (error) li.className = 'error';
  $('log').prepend(li);
}

function render() {
  const s = status();
  $('who').textContent = s
    ? `client ${s.client} of user ${s.user}, license server ${s.server}`
    : 'not registered';
  $('registration').hidden = Boolean(s);
  const rows = (s ? s.licenses : []).map((l) => {
    const tr = document.createElement('tr');
    for (const v of [l.content, l.license, l.terms || 'purchase']) {
      const td = document.createElement('td');
      td.textContent = String(v);
      tr.append(td);
    }
    return tr;
  });
  $('licenses').tBodies[0].replaceChildren(...rows);
}

let queue = Promise.resolve();
/** Runs `f` after every action before it; says what it did or why it failed. */
function action(name, f) {
  return (...args) => {
    const run = queue.then(() => f(...args));
    queue = run.catch(() => {});
    return run.then((result) => {
      log(`${name}: ${typeof result === 'object' ? JSON.stringify(result) : result ?? 'done'}`);
      render();
      return result;
    }, (e) => {
      log(`${name}: ${e.message || e}`, true);
      render();
      throw e;
    });
  };
}

const actions = {
  register: action('register', register),
  buy: action('buy', buy),
  play: action('play', play),
  moveOut: action('move out', moveOut),
  moveIn: action('move in', moveIn),
  forget: action('forget', forget),
  timings: action('timings', timings),
  status,
};

const quiet = (p) => p.catch(() => {});
$('register-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const credentialHex = $('credential').value;
  $('credential').value = ''; // kept wrapped in IndexedDB, not in the form
  quiet(actions.register($('user').value, credentialHex, $('license-server').value));
});
$('buy').addEventListener('click', () => quiet(actions.buy($('content').value)));
$('play').addEventListener('click', () => quiet(actions.play($('content').value)));
$('move-out').addEventListener('click', () =>
  quiet(actions.moveOut($('move-content').value, $('move-to').value)));
$('move-in').addEventListener('click', async () => {
  const file = $('package-file').files[0];
  if (file) quiet(actions.moveIn(new Uint8Array(await file.arrayBuffer())));
});
$('forget').addEventListener('click', () => quiet(actions.forget()));

await init();
window.treecast = {
  ...actions,
  ready: action('open', open)().then(() => true, () => false),
};
