// The viewer page: plays the stream's sound through Web Audio and shows each frame when its
// sound plays (frames and sound carry stream times; see avatar/view/session.py).
"use strict";

const JITTER_S = 0.15;     // playback runs this far behind the first sound received
const KIND_AUDIO = 1, KIND_FRAME = 2;
const $ = (id) => document.getElementById(id);

const state = {
  ws: null, ctx: null, info: null, fps: 25,
  base: null,              // AudioContext time of stream time 0
  frames: [],              // received, not yet shown: {index, time, bitmap}
  shownIndex: -1, lastIndex: -1,
  view: { yaw: 0, pitch: 0, dolly: 0 },
  mic: null, clickAt: null, utteranceAt: null,
};

// What the page measured, for the overlay and for tests (window.viewerStats).
const stats = {
  connected: false, busy: false, received: 0, shown: 0, skipped: 0, serverDropped: 0, audioChunks: 0,
  frameTimes: [],          // stream times of the last shown frames
  offsetsMs: [],           // playback position minus the shown frame's centre, ms
  shownAt: [],             // performance.now() of the last shown frames
  latencyMs: null, fps: 0, avOffsetMs: null, lastFrameTime: null, streamNow: null, errors: [],
  lastFrameSize: 0,
};
window.viewerStats = stats;

function message(text) {
  $("message").textContent = text || "";
  if (text) stats.errors.push(text);
}

function streamNow() {
  if (state.base === null || !state.ctx) return null;
  return state.ctx.currentTime - state.base;
}

async function loadInfo() {
  const info = await (await fetch("/api/info")).json();
  state.info = info;
  $("subject").textContent = info.subject;
  for (const c of info.clips) {
    const o = document.createElement("option");
    o.value = c.id;
    o.textContent = c.seconds ? `${c.label} (${c.seconds.toFixed(0)} s)` : c.label;
    $("clip").appendChild(o);
  }
  for (const v of info.voices) {
    const o = document.createElement("option");
    o.value = v.id;
    o.textContent = `${v.id} - ${v.name}`;
    if (v.id === "en-us") o.selected = true;
    $("voice").appendChild(o);
  }
}

function send(obj) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(obj));
}

function start() {
  $("start").style.display = "none";
  state.ctx = new (window.AudioContext || window.webkitAudioContext)();
  state.ctx.resume();
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  $("status").textContent = "connecting...";
  ws.onopen = () => { stats.connected = true; $("status").textContent = "streaming"; };
  ws.onclose = () => {
    stats.connected = false;
    if (!stats.busy) $("status").textContent = "disconnected (reload to reconnect)";
  };
  ws.onmessage = (ev) => (typeof ev.data === "string" ? onJson(JSON.parse(ev.data)) : onBinary(ev.data));
  requestAnimationFrame(draw);
}

function onJson(m) {
  if (m.type === "hello") {
    state.fps = m.fps;
  } else if (m.type === "busy") {
    stats.busy = true;
    $("status").textContent = "busy";
    message(`${m.message}. ${m.fix || ""}`);
  } else if (m.type === "error") {
    message(m.fix ? `${m.message}: ${m.fix}` : m.message);
  } else if (m.type === "utterance") {
    state.utteranceAt = m.start_s;
    measureLatency();
    message("");
  }
}

// Click to sound: the time since the click plus the wait until the utterance's first sample plays.
function measureLatency() {
  if (state.clickAt === null || state.utteranceAt === null || state.base === null) return;
  const untilSound = (state.base + state.utteranceAt - state.ctx.currentTime) * 1000;
  stats.latencyMs = Math.round(performance.now() - state.clickAt + Math.max(0, untilSound));
  state.clickAt = null;
  state.utteranceAt = null;
}

function onBinary(buf) {
  const dv = new DataView(buf);
  const kind = dv.getUint8(0), time = dv.getFloat64(8, true);
  if (kind === KIND_AUDIO) {
    stats.audioChunks++;
    const pcm = new Int16Array(buf, 16);
    const ctx = state.ctx;
    if (state.base === null) {
      state.base = ctx.currentTime - time + JITTER_S;
      measureLatency();
    }
    const audio = ctx.createBuffer(1, pcm.length, 16000);
    const ch = audio.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
    const src = ctx.createBufferSource();
    src.buffer = audio;
    src.connect(ctx.destination);
    src.start(Math.max(state.base + time, ctx.currentTime));
  } else if (kind === KIND_FRAME) {
    const index = dv.getUint32(4, true);
    if (state.lastIndex >= 0 && index > state.lastIndex + 1) stats.serverDropped += index - state.lastIndex - 1;
    state.lastIndex = Math.max(state.lastIndex, index);
    stats.received++;
    stats.lastFrameSize = buf.byteLength - 16;
    createImageBitmap(new Blob([new Uint8Array(buf, 16)], { type: "image/jpeg" })).then((bitmap) => {
      state.frames.push({ index, time, bitmap });
    });
  }
}

function draw() {
  requestAnimationFrame(draw);
  const now = streamNow();
  stats.streamNow = now;
  stats.view = state.view;
  let pick = null;
  if (state.mic) {
    pick = state.frames.pop() || null;           // live: the newest frame at once
    for (const f of state.frames) f.bitmap.close();
    state.frames = [];
  } else if (now !== null) {
    state.frames.sort((a, b) => a.index - b.index);
    while (state.frames.length && state.frames[0].time <= now) {
      if (pick) { pick.bitmap.close(); stats.skipped++; }
      pick = state.frames.shift();
    }
  }
  if (!pick) return;
  $("view").getContext("2d").drawImage(pick.bitmap, 0, 0, 512, 512);
  pick.bitmap.close();
  stats.shown++;
  stats.lastFrameTime = pick.time;
  const t = performance.now();
  stats.shownAt.push(t);
  stats.frameTimes.push(pick.time);
  if (now !== null && !state.mic) stats.offsetsMs.push((now - pick.time - 0.5 / state.fps) * 1000);
  for (const a of [stats.shownAt, stats.frameTimes, stats.offsetsMs]) if (a.length > 100) a.splice(0, a.length - 100);
  const recent = stats.shownAt.filter((s) => s > t - 1000);
  stats.fps = recent.length;
  const offs = stats.offsetsMs.slice(-25);
  stats.avOffsetMs = offs.length ? offs.reduce((a, b) => a + b, 0) / offs.length : null;
  $("overlay").textContent =
    `fps ${stats.fps.toFixed(0)}  dropped ${stats.skipped + stats.serverDropped}\n` +
    `latency ${stats.latencyMs === null ? "-" : stats.latencyMs + " ms"}\n` +
    `A/V offset ${stats.avOffsetMs === null ? "-" : (stats.avOffsetMs >= 0 ? "+" : "") + stats.avOffsetMs.toFixed(0) + " ms"}`;
}

// -- speech ----------------------------------------------------------------------------------------

function play(cmd) {
  if (!state.ws) start();
  state.clickAt = performance.now();
  message("");
  const go = () => send(cmd);
  if (state.ws.readyState === WebSocket.OPEN) go(); else state.ws.addEventListener("open", go, { once: true });
}

$("start").onclick = () => start();
$("play").onclick = () => play({ type: "play", clip: $("clip").value });
$("stop").onclick = () => send({ type: "stop" });
$("say").onclick = () => {
  const text = $("text").value.trim();
  if (!text) { message("type something to say first"); return; }
  play({ type: "say", text, voice: $("voice").value });
};
$("upload").onclick = async () => {
  const file = $("file").files[0];
  if (!file) { message("choose an audio file first"); return; }
  const limit = state.info ? state.info.max_upload_mb : Infinity;
  if (file.size > limit * 1048576) {
    message(`${file.name} is larger than ${limit} MB: upload a shorter recording`);
    return;
  }
  message(`uploading ${file.name}...`);
  const form = new FormData();
  form.append("audio", file, file.name);
  let reply;
  try {
    const res = await fetch("/api/upload", { method: "POST", body: form });
    reply = await res.json();
  } catch (e) {
    message(`the upload failed (${e})`);
    return;
  }
  if (reply.error) { message(reply.fix ? `${reply.error}: ${reply.fix}` : reply.error); return; }
  play({ type: "play", upload: reply.id });
};

$("mic").onclick = async () => {
  if (!state.ws) start();
  if (state.mic) {
    state.mic.stream.getTracks().forEach((t) => t.stop());
    state.mic.node.disconnect();
    state.mic = null;
    send({ type: "mic", on: false });
    $("mic").textContent = "Microphone: off";
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (e) {
    message(`no microphone (${e.name}): allow it in the browser, or use a clip`);
    return;
  }
  const ctx = state.ctx;
  const source = ctx.createMediaStreamSource(stream);
  const node = ctx.createScriptProcessor(2048, 1, 1);
  const ratio = ctx.sampleRate / 16000;
  node.onaudioprocess = (ev) => {
    const x = ev.inputBuffer.getChannelData(0);
    const n = Math.floor(x.length / ratio);
    const out = new Int16Array(n);
    for (let i = 0; i < n; i++) {
      let s = 0, k = 0;
      for (let j = Math.floor(i * ratio); j < Math.floor((i + 1) * ratio); j++, k++) s += x[j];
      out[i] = Math.max(-32768, Math.min(32767, (s / Math.max(k, 1)) * 32767));
    }
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(out.buffer);
  };
  const mute = ctx.createGain();
  mute.gain.value = 0;
  source.connect(node); node.connect(mute); mute.connect(ctx.destination);
  state.mic = { stream, node };
  send({ type: "mic", on: true });
  $("mic").textContent = "Microphone: on";
};

// -- motion controls -----------------------------------------------------------------------------------

function sendControls() {
  for (const id of ["mouth", "blink", "head"]) $(id).nextElementSibling.textContent = Number($(id).value).toFixed(2);
  send({ type: "controls", mouth: +$("mouth").value, blink: +$("blink").value, head: +$("head").value });
}
for (const id of ["mouth", "blink", "head"]) $(id).oninput = sendControls;

// -- camera: drag to orbit, scroll to zoom, double-click to reset ---------------------------------------------

let drag = null, viewTimer = null;
function sendView() {
  if (viewTimer) return;
  viewTimer = setTimeout(() => { viewTimer = null; send({ type: "view", ...state.view }); }, 40);
}
const canvas = $("view");
canvas.addEventListener("pointerdown", (e) => { drag = { x: e.clientX, y: e.clientY }; canvas.setPointerCapture(e.pointerId); });
canvas.addEventListener("pointerup", () => { drag = null; });
canvas.addEventListener("pointermove", (e) => {
  if (!drag) return;
  const v = state.view;
  v.yaw = Math.max(-30, Math.min(30, v.yaw + (e.clientX - drag.x) * 0.15));
  v.pitch = Math.max(-20, Math.min(20, v.pitch + (e.clientY - drag.y) * 0.15));
  drag = { x: e.clientX, y: e.clientY };
  sendView();
});
canvas.addEventListener("wheel", (e) => {
  e.preventDefault();
  state.view.dolly = Math.max(-0.25, Math.min(0.25, state.view.dolly - e.deltaY * 0.0004));
  sendView();
}, { passive: false });
canvas.addEventListener("dblclick", () => { state.view = { yaw: 0, pitch: 0, dolly: 0 }; sendView(); });

loadInfo().catch((e) => message(`cannot reach the viewer (${e})`));
