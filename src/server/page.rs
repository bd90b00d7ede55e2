//! The page at `/`: a prompt form, live progress from the job's events, the stage-2 preview
//! playing as it streams, then the enhanced video.

pub const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>streamingt2v</title>
<style>
 body { font-family: system-ui, sans-serif; max-width: 760px; margin: 2em auto; color: #222; }
 input, button { font-size: 1em; padding: .4em; }
 #prompt { width: 60%; }
 video { width: 320px; height: 320px; background: #111; margin-right: 1em; }
 #log { font-family: monospace; font-size: .85em; white-space: pre-wrap; max-height: 12em; overflow: auto; background: #f4f4f4; padding: .5em; }
 .videos { display: flex; margin-top: 1em; }
 label { display: block; font-size: .9em; color: #555; }
</style>
</head>
<body>
<h1>streamingt2v</h1>
<form id="form">
 <input id="prompt" value="a cat running on the street" aria-label="prompt">
 <input id="frames" type="number" value="48" min="16" step="8" aria-label="frames" style="width:5em">
 <input id="steps" type="number" value="10" min="1" aria-label="steps" style="width:4em">
 <button id="go">Generate</button>
</form>
<p id="status">idle</p>
<div class="videos">
 <div><label>preview (stage 2, plays while generating)</label><video id="preview" muted autoplay playsinline controls></video></div>
 <div><label>final (enhanced)</label><video id="final" muted playsinline controls></video></div>
</div>
<div id="log"></div>
<script>
const $ = (id) => document.getElementById(id);
function log(line) { $("log").textContent += line + "\n"; $("log").scrollTop = 1e9; }
$("form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const steps = +$("steps").value;
  const body = { prompt: $("prompt").value, frames: +$("frames").value, steps, stage1_steps: steps, enhance_steps: steps };
  const response = await fetch("/v1/videos", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const job = await response.json();
  if (!response.ok) { $("status").textContent = "error: " + job.error.message; return; }
  $("status").textContent = "queued: " + job.id;
  window.job = job;
  let previewStarted = false;
  const events = new EventSource(job.urls.events);
  events.onmessage = (m) => log(m.data);
  for (const name of ["queued", "in_progress", "stage_started", "stage_finished", "warning"]) {
    events.addEventListener(name, (m) => { log(name + " " + m.data); $("status").textContent = name; });
  }
  events.addEventListener("step", (m) => { const d = JSON.parse(m.data); $("status").textContent = `${d.stage} chunk ${d.chunk} step ${d.step}/${d.steps}`; });
  events.addEventListener("chunk_ready", (m) => {
    log("chunk_ready " + m.data);
    if (!previewStarted && JSON.parse(m.data).variant === "preview") { previewStarted = true; $("preview").src = job.urls.preview; $("preview").play().catch(() => {}); }
  });
  const end = (name) => (m) => { log(name + " " + m.data); $("status").textContent = name; events.close();
    if (name === "completed") { $("final").src = job.urls.final + "&t=" + Date.now(); $("final").play().catch(() => {}); } };
  for (const name of ["completed", "failed", "cancelled"]) events.addEventListener(name, end(name));
});
</script>
</body>
</html>
"#;
