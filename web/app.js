// The Pulse demo page: the seed's frontend behaviour over the Pulse API.
//
// Upload: the API hands out presigned part URLs and the browser PUTs the file straight to S3.
// Then the page follows the asset's events over a WebSocket: a spinner at `processing`, the
// blurred thumbnail at `thumbnail_ready`, a progress ring, Play at `playable` (low quality first),
// quality levels as variants finish, and a message at `done`, `partial` or `failed`.
"use strict";

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.hash.slice(1)).get("token")
  || localStorage.getItem("pulse-token")
  || prompt("API token (PULSE_API_TOKEN)");
localStorage.setItem("pulse-token", token);

let masterUrl = null;
let shownProgress = 0;
let player = null;
let levelsLoaded = 0;

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
  });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return body;
}

/** PUTs one part to its presigned URL; resolves with the ETag S3 answered. */
function putPart(url, blob, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("PUT", url);
    request.upload.onprogress = (event) => onProgress(event.loaded);
    request.onload = () => request.status < 300
      ? resolve(request.getResponseHeader("ETag"))
      : reject(new Error(`part upload answered ${request.status}`));
    request.onerror = () => reject(new Error("part upload failed"));
    request.send(blob);
  });
}

async function upload(file) {
  $("upload").hidden = false;
  setStage("uploading");
  const plan = await api("/v1/uploads", {
    method: "POST",
    body: JSON.stringify({ filename: file.name, size: file.size, content_type: file.type || "application/octet-stream" }),
  });
  const parts = [];
  let sent = 0;
  for (const part of plan.parts) {
    const start = (part.part_number - 1) * plan.part_size;
    const blob = file.slice(start, start + plan.part_size);
    const etag = await putPart(part.url, blob, (loaded) => showUpload(sent + loaded, file.size));
    sent += blob.size;
    parts.push({ part_number: part.part_number, etag });
  }
  showUpload(file.size, file.size);
  const accepted = await api(plan.complete_url, {
    method: "POST",
    body: JSON.stringify({ upload_id: plan.upload_id, parts }),
  });
  $("upload").hidden = true;
  $("spinner").hidden = false;
  follow(accepted.asset_id);
}

function showUpload(sent, total) {
  const percent = Math.round((100 * sent) / total);
  $("upload-progress").value = percent;
  $("upload-text").textContent = `Uploading… ${percent}%`;
}

function follow(assetId) {
  document.body.dataset.asset = assetId;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/v1/assets/${assetId}/events?token=${encodeURIComponent(token)}`);
  socket.onmessage = (message) => handle(JSON.parse(message.data));
}

function handle(event) {
  if (event.progress !== undefined) showProgress(event.progress);
  switch (event.stage) {
    case "processing":
      setStage("processing");
      $("spinner").hidden = false;
      break;
    case "thumbnail_ready":
      $("thumbnail").src = event.url;
      $("thumbnail").hidden = false;
      break;
    case "playable":
      masterUrl = event.url;
      setStage("playable");
      $("play").disabled = false;
      refreshQualities();
      break;
    case "done":
      setStage("done");
      $("ring").hidden = true;
      $("spinner").hidden = true;
      say("done", "Done: every quality is ready.");
      refreshQualities();
      break;
    case "failed":
      setStage(event.status);
      $("ring").hidden = true;
      $("spinner").hidden = true;
      say(event.status, event.status === "partial"
        ? `Playable in lower quality only. ${event.error}`
        : `Processing failed. ${event.error}`);
      refreshQualities();
      break;
    default:
      if (masterUrl) refreshQualities();
  }
}

function setStage(stage) {
  document.body.dataset.stage = stage;
}

function say(kind, text) {
  $("message").className = kind;
  $("message").textContent = text;
  $("message").hidden = false;
}

function showProgress(percent) {
  shownProgress = Math.max(shownProgress, percent);
  $("spinner").hidden = true;
  $("ring").hidden = document.body.dataset.stage === "done";
  const circumference = 2 * Math.PI * 40;
  document.querySelector("#ring .bar").style.strokeDashoffset = circumference * (1 - shownProgress / 100);
  $("percent").textContent = `${Math.round(shownProgress)}%`;
}

/** Lists the variants the master playlist has so far (it grows as variants finish). */
async function refreshQualities() {
  if (!masterUrl) return;
  const text = await (await fetch(masterUrl, { cache: "no-store" })).text();
  const levels = [...text.matchAll(/RESOLUTION=(\d+)x(\d+)/g)].map(([, width, height]) => {
    const name = `${Math.min(width, height)}p`;
    return { name, width, height };
  });
  const list = $("qualities");
  list.replaceChildren(...levels.map((level) => {
    const item = document.createElement("li");
    item.textContent = level.name;
    item.title = `${level.width}x${level.height}`;
    return item;
  }));
  // A paused player picks up new levels by reloading the grown master.
  if (player && levels.length > levelsLoaded && $("video").paused) startPlayer();
}

function startPlayer() {
  const video = $("video");
  video.hidden = false;
  $("thumbnail").hidden = true;
  if (window.Hls && Hls.isSupported()) {
    if (player) player.destroy();
    player = new Hls();
    player.on(Hls.Events.MANIFEST_PARSED, (_, data) => {
      levelsLoaded = data.levels.length;
      video.play();
    });
    player.loadSource(masterUrl);
    player.attachMedia(video);
  } else {
    video.src = masterUrl;
    video.play();
  }
}

$("file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) upload(file).catch((error) => say("failed", error.message));
});
$("play").addEventListener("click", startPlayer);
