// The console's only script: live schedule updates (server-sent events),
// actions without reloads, and the configuration drawer's job list and
// runs preview. Every page works without it, except the live parts.
"use strict";
(() => {
  const csrf = document.querySelector('meta[name="csrf"]')?.content ?? "";
  const toast = document.getElementById("toast");
  let toastTimer = null;
  const say = (text, error) => {
    if (!toast) return;
    toast.textContent = text;
    toast.className = error ? "error" : "ok";
    toast.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { toast.hidden = true; }, error ? 8000 : 4000);
  };

  // A schedule's body follows the status stream and is rendered again on
  // the server after each change (typed reason and open menus are kept).
  const body = document.getElementById("schedule-body");
  let refresh = () => {};
  if (body) {
    let pending = null, running = false, again = false;
    const swap = async () => {
      if (running) { again = true; return; }
      running = true;
      try {
        const r = await fetch(body.dataset.src, { headers: { "x-console-fetch": "1" } });
        if (r.ok) {
          const reason = body.querySelector('input[name="reason"]')?.value ?? "";
          const open = [...body.querySelectorAll("details[open]")].map((d) => d.closest("[data-position]")?.dataset.position);
          body.innerHTML = await r.text();
          const input = body.querySelector('input[name="reason"]');
          if (input) input.value = reason;
          for (const p of open) body.querySelector(`[data-position="${p}"] details`)?.setAttribute("open", "");
        }
      } finally {
        running = false;
        if (again) { again = false; swap(); }
      }
    };
    refresh = () => { clearTimeout(pending); pending = setTimeout(swap, 100); };
    const source = new EventSource(body.dataset.live);
    source.onopen = () => { body.dataset.liveState = "open"; refresh(); };
    source.onerror = () => { body.dataset.liveState = "reconnecting"; };
    source.onmessage = () => refresh();
  }

  // Actions post in the background; the answer shows as a toast.
  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!form.matches("form[data-enhance]")) return;
    event.preventDefault();
    const button = event.submitter;
    if (button?.dataset.confirm && !confirm(button.dataset.confirm)) return;
    const action = button?.formAction || form.action;
    const data = new URLSearchParams(new FormData(form));
    button?.closest("details")?.removeAttribute("open");
    const r = await fetch(action, {
      method: "POST",
      body: data,
      headers: { "x-console-fetch": "1", "x-csrf-token": csrf },
    });
    say(await r.text(), !r.ok);
    refresh();
  });

  // The configuration drawer: jobs added, removed, moved (drag, or the
  // arrow buttons), and the next runs previewed as the form is typed.
  const form = document.getElementById("config-form");
  if (!form) return;
  const jobs = document.getElementById("jobs");
  const changed = () => form.dispatchEvent(new Event("input"));
  const line = (name) => {
    const li = document.createElement("li");
    li.draggable = true;
    li.dataset.job = name;
    li.innerHTML = `<span class="grip" aria-hidden="true">⠿</span><span class="job-name"></span>
      <input type="hidden" name="job"><select name="job_mode"><option value="auto">automatic</option><option value="manual">manual</option></select>
      <button type="button" class="icon" data-move="up">↑</button><button type="button" class="icon" data-move="down">↓</button>
      <button type="button" class="icon danger" data-remove>×</button>`;
    li.querySelector(".job-name").textContent = name;
    li.querySelector('input[name="job"]').value = name;
    li.querySelector("select").setAttribute("aria-label", `How ${name} starts`);
    li.querySelector('[data-move="up"]').setAttribute("aria-label", `Move ${name} up`);
    li.querySelector('[data-move="down"]').setAttribute("aria-label", `Move ${name} down`);
    li.querySelector("[data-remove]").setAttribute("aria-label", `Remove ${name}`);
    return li;
  };
  document.getElementById("add-job")?.addEventListener("click", () => {
    jobs.append(line(document.getElementById("catalogue").value));
    changed();
  });
  jobs.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    const li = button?.closest("li");
    if (!li) return;
    if (button.dataset.move === "up" && li.previousElementSibling) li.previousElementSibling.before(li);
    else if (button.dataset.move === "down" && li.nextElementSibling) li.nextElementSibling.after(li);
    else if (button.hasAttribute("data-remove")) li.remove();
    else return;
    button.isConnected && button.focus();
    changed();
  });
  let dragged = null;
  jobs.addEventListener("dragstart", (e) => { dragged = e.target.closest("li"); dragged?.classList.add("dragging"); });
  jobs.addEventListener("dragend", () => { dragged?.classList.remove("dragging"); dragged = null; changed(); });
  jobs.addEventListener("dragover", (e) => {
    e.preventDefault();
    const over = e.target.closest("li");
    if (!dragged || !over || over === dragged) return;
    const after = e.clientY > over.getBoundingClientRect().top + over.offsetHeight / 2;
    after ? over.after(dragged) : over.before(dragged);
  });
  const preview = document.getElementById("preview");
  let typing = null;
  const ask = async () => {
    const data = new URLSearchParams(new FormData(form));
    const r = await fetch("/configs/preview", {
      method: "POST",
      body: data,
      headers: { "x-console-fetch": "1", "x-csrf-token": csrf },
    });
    preview.innerHTML = await r.text();
  };
  form.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(ask, 250); });
  ask();
})();
