// The web device's page (issue 30, `docs/web.md`): the I/O around the WebAssembly device.
//
// The module (`treecast_web`, built by `scripts/build-web.sh`) does everything a device does
// with bytes; this page fetches them from the service it is served by (`/v1/...`), keeps the
// device in IndexedDB and hands the ClearKey license to the browser's EME. What IndexedDB keeps:
//   - `wrap`: an AES-GCM key WebCrypto generated non-extractable (a `CryptoKey` object);
//   - `keys`, `credential`: the device's keys (`WebDevice.keys`) and the user's credential,
//     each encrypted with `wrap` (a fresh IV each time);
//   - `state`: the state the device sealed itself (`WebDevice.save`), after every change;
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
    const tx = db.transaction(name, mode);
    const request = f(tx.objectStore(name));
    tx.oncomplete = () => resolve(request && request.result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error('IndexedDB transaction aborted'));
  });
}
const get = (name, key) => store(name, 'readonly', (s) => s.get(key));
const put = (name, key, value) => store(name, 'readwrite', (s) => s.put(value, key));

// --- secrets wrapped by a non-extractable key -----------------------------------------------

const AAD = new TextEncoder().encode('treecast/web/v1/wrapped');
async function wrapKey() {
  let key = await get('device', 'wrap');
  if (!key) {
    key = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
    await put('device', 'wrap', key);
  }
  return key;
}
async function wrap(bytes) {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const sealed = await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: AAD }, await wrapKey(), bytes);
  bytes.fill(0);
  return { iv, sealed: new Uint8Array(sealed) };
}
async function unwrap(record) {
  const key = await get('device', 'wrap');
  if (!key) throw new Error('the wrapping key is gone: this device cannot be opened');
  return new Uint8Array(await crypto.subtle.decrypt(
    { name: 'AES-GCM', iv: record.iv, additionalData: AAD }, key, record.sealed));
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
    try { message = JSON.parse(message).message || message; } catch (_) { /* as it came */ }
    throw new Error(`${method} ${path}: ${response.status} ${message}`);
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
  const plain = await unwrap(keys);
  try {
    device = WebDevice.load(plain, await get('device', 'state'));
  } finally {
    plain.fill(0);
  }
  const cred = await unwrap(await get('device', 'credential'));
  credential = new TextDecoder().decode(cred);
  cred.fill(0);
  device.store_ekb((await call('GET', '/v1/ekb')).bytes);
  return true;
}

async function register(user, credentialHex, server) {
  if (device) throw new Error(`this browser is client ${device.id()} already (forget it first)`);
  const seed = crypto.getRandomValues(new Uint8Array(32));
  try {
    const request = WebDevice.registration_request(seed, BigInt(user), Number(server));
    const { bytes } = await call('POST', `/v1/users/${user}/clients`,
      { body: request, credential: credentialHex.trim() });
    const registered = WebDevice.register(seed, BigInt(user), Number(server), bytes);
    registered.store_ekb((await call('GET', '/v1/ekb')).bytes);
    await put('device', 'keys', await wrap(registered.keys()));
    await put('device', 'credential', await wrap(new TextEncoder().encode(credentialHex.trim())));
    device = registered;
    credential = credentialHex.trim();
    await save();
  } finally {
    seed.fill(0);
  }
  return Number(device.id());
}

function needDevice() {
  if (!device) throw new Error('register this browser first');
}

async function buy(content) {
  needDevice();
  content = BigInt(content);
  await download(content);
  const request = device.license_request(content, now());
  await save(); // the request's nonce is used before the request leaves
  const { bytes } = await call('POST', '/v1/licenses', { body: request });
  await refreshServerKeys(device.server());
  device.acquire_license(bytes);
  await complete(content);
  await save();
  return Number(content);
}

async function play(content) {
  needDevice();
  content = BigInt(content);
  // Whatever played before stops first: what follows plays from this device's license or not at all.
  const video = $('video');
  video.pause();
  video.removeAttribute('src');
  video.load();
  $('shown').replaceChildren();
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
  return found;
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

async function moveOut(content, to) {
  needDevice();
  content = BigInt(content);
  const request = device.move_request(content, BigInt(to), now());
  await save();
  const { bytes: certificate } = await call('POST', '/v1/certificates', { body: request });
  await refreshServerKeys(WebDevice.certificate_server(certificate));
  const pkg = device.move_out(certificate);
  await save(); // the license is gone before the package leaves
  const link = $('package-link');
  link.href = URL.createObjectURL(new Blob([pkg], { type: 'application/octet-stream' }));
  link.download = `move-${content}-to-${to}.tcmp`;
  link.hidden = false;
  return toB64(pkg);
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
  await save();
  return Number(content);
}

function status() {
  return device ? JSON.parse(device.status()) : null;
}

async function forget() {
  await store('device', 'readwrite', (s) => s.clear());
  await store('media', 'readwrite', (s) => s.clear());
  if (device) device.free();
  device = null;
  credential = null;
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
  status,
};

const quiet = (p) => p.catch(() => {});
$('register-form').addEventListener('submit', (e) => {
  e.preventDefault();
  quiet(actions.register($('user').value, $('credential').value, $('license-server').value));
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
