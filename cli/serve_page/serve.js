// The page of `sumctl serve`: submit a transcript, poll its job, show the minutes, list jobs.
// Plain JavaScript, no build step. Every text from the server or a file reaches the page
// through textContent, never innerHTML: a transcript can hold markup, and it stays text.
"use strict";

const $ = (id) => document.getElementById(id);
const tokenRequired = document.body.dataset.tokenRequired === "yes";
let chosenFile = null;

function headers() {
  const h = {};
  const field = $("token");
  if (tokenRequired && field) {
    sessionStorage.setItem("sumctl-token", field.value);
    h["Authorization"] = "Bearer " + field.value;
  }
  return h;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function setStatus(text, failed = false) {
  $("status").textContent = text;
  $("status").className = failed ? "failed" : "";
}

function choose(file) {
  chosenFile = file || null;
  $("chosen").textContent = chosenFile ? chosenFile.name + " (" + chosenFile.size.toLocaleString() + " bytes)" : "";
  $("submit").disabled = !chosenFile;
}

// --- a small Markdown renderer: what the minutes use (front matter, headings, lists, task
// lines, paragraphs, **bold**, _emphasis_, `code`), as DOM nodes.

const INLINE = /(\*\*[^*]+\*\*|`[^`]+`|(?<![\w])_[^_]+_(?![\w]))/;

function inline(parent, text) {
  for (const part of text.split(INLINE)) {
    if (!part) continue;
    let node;
    if (part.startsWith("**") && part.endsWith("**") && part.length > 4) {
      node = document.createElement("strong");
      node.textContent = part.slice(2, -2);
    } else if (part.startsWith("`") && part.endsWith("`") && part.length > 2) {
      node = document.createElement("code");
      node.textContent = part.slice(1, -1);
    } else if (part.startsWith("_") && part.endsWith("_") && part.length > 2) {
      node = document.createElement("em");
      node.textContent = part.slice(1, -1);
    } else {
      node = document.createTextNode(part);
    }
    parent.appendChild(node);
  }
}

function renderMarkdown(markdown, target) {
  target.replaceChildren();
  let lines = markdown.replace(/\r\n?/g, "\n").split("\n");
  if (lines[0] === "---") {
    const end = lines.indexOf("---", 1);
    if (end > 0) {
      const front = document.createElement("pre");
      front.className = "front-matter";
      front.textContent = lines.slice(1, end).join("\n");
      target.appendChild(front);
      lines = lines.slice(end + 1);
    }
  }
  let list = null;
  let paragraph = null;
  for (const line of lines) {
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    const item = /^\s*[-*]\s+(\[([ xX])\]\s+)?(.*)$/.exec(line);
    if (!line.trim()) {
      list = paragraph = null;
    } else if (heading) {
      list = paragraph = null;
      const h = document.createElement("h" + heading[1].length);
      inline(h, heading[2]);
      target.appendChild(h);
    } else if (item) {
      paragraph = null;
      if (!list) {
        list = document.createElement("ul");
        target.appendChild(list);
      }
      const li = document.createElement("li");
      if (item[1]) {
        li.className = "task";
        const box = document.createElement("input");
        box.type = "checkbox";
        box.disabled = true;
        box.checked = item[2] !== " ";
        li.appendChild(box);
        li.appendChild(document.createTextNode(" "));
      }
      inline(li, item[3]);
      list.appendChild(li);
    } else {
      list = null;
      if (!paragraph) {
        paragraph = document.createElement("p");
        target.appendChild(paragraph);
      } else {
        paragraph.appendChild(document.createTextNode(" "));
      }
      inline(paragraph, line.trim());
    }
  }
}

// --- jobs

async function showMinutes(id) {
  const response = await api("/v1/jobs/" + encodeURIComponent(id) + "/summary.md");
  renderMarkdown(await response.text(), $("minutes"));
}

async function poll(id, name) {
  for (;;) {
    const job = await (await api("/v1/jobs/" + encodeURIComponent(id))).json();
    if (job.status === "done") {
      setStatus(name + ": done in " + (job.seconds || 0).toFixed(1) + " s");
      await showMinutes(id);
      return;
    }
    if (job.status === "failed") {
      setStatus(name + ": failed: " + job.error, true);
      return;
    }
    setStatus(name + ": " + job.status + "...");
    await new Promise((resolve) => setTimeout(resolve, 400));
  }
}

async function submit(event) {
  event.preventDefault();
  if (!chosenFile) return;
  const form = new FormData();
  form.append("file", chosenFile, chosenFile.name);
  form.append("length", $("length").value);
  if ($("summary-only").checked) form.append("minutes", "false");
  if ($("date").value) form.append("date", $("date").value);
  $("submit").disabled = true;
  $("minutes").replaceChildren();
  try {
    setStatus(chosenFile.name + ": uploading...");
    const job = await (await api("/v1/jobs", { method: "POST", body: form })).json();
    await poll(job.id, chosenFile.name);
  } catch (e) {
    setStatus(e.message, true);
  } finally {
    $("submit").disabled = !chosenFile;
    listJobs();
  }
}

async function listJobs() {
  const body = $("jobs").querySelector("tbody");
  let page;
  try {
    page = await (await api("/v1/jobs?limit=50")).json();
  } catch (e) {
    body.replaceChildren();
    return;
  }
  const rows = page.jobs.map((job) => {
    const tr = document.createElement("tr");
    const when = new Date(job.created_at * 1000).toLocaleString();
    for (const text of [job.filename, job.status, when]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    const td = document.createElement("td");
    if (job.status === "done") {
      const open = document.createElement("button");
      open.type = "button";
      open.textContent = "show";
      open.addEventListener("click", () => {
        setStatus(job.filename);
        showMinutes(job.id).catch((e) => setStatus(e.message, true));
      });
      td.appendChild(open);
    } else if (job.status === "failed") {
      td.textContent = job.error || "";
    }
    tr.appendChild(td);
    return tr;
  });
  body.replaceChildren(...rows);
}

const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  choose(e.dataTransfer.files[0]);
});
$("file").addEventListener("change", (e) => choose(e.target.files[0]));
$("submit-form").addEventListener("submit", submit);
$("refresh").addEventListener("click", listJobs);
if (tokenRequired && $("token")) {
  $("token").value = sessionStorage.getItem("sumctl-token") || "";
  $("token").addEventListener("change", listJobs);
}
listJobs();
