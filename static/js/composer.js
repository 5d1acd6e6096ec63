// The composer (/compose): uploads images as they are added, and asks the server to check the post
// while the person types. The server's answer (POST /api/posts/validate) comes from the same rule
// engine that refuses a post, so the counter never disagrees with Publish. Without this script
// the form still posts text, and the server answers with the same problems.
// A static file: the Content-Security-Policy allows no inline script (hayon/settings/base.py).
"use strict";

(() => {
  const form = document.getElementById("composer");
  if (!form) return;
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  const textBox = form.querySelector("[data-text]");
  const mediaList = document.getElementById("media-list");
  const picker = document.getElementById("image-picker");
  const dropzone = document.getElementById("dropzone");
  const mediaStatus = document.getElementById("media-status");
  const checkStatus = document.getElementById("check-status");
  const general = document.getElementById("general-problems");
  const maxImages = Number(form.dataset.maxImages);
  const DEBOUNCE_MS = 300;
  let timer = null;
  let sequence = 0; // only the answer to the latest check is shown

  const el = (tag, attrs = {}, text = "") => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    if (text) node.textContent = text;
    return node;
  };

  // A preview's image crop: a custom property set from script is allowed where style="" is not.
  const applyRatios = () => {
    for (const preview of form.querySelectorAll("[data-preview]")) {
      const media = preview.querySelector("[data-preview-media]");
      if (preview.dataset.ratio) media.style.setProperty("--ratio", preview.dataset.ratio);
    }
  };

  const ticked = () => [...form.querySelectorAll("[data-target]:checked")].map((box) => box.value);
  const mediaItems = () => [...mediaList.querySelectorAll("[data-media-id]")];

  const draft = () => {
    const targets = ticked();
    const overrides = {};
    for (const box of form.querySelectorAll("[data-override]")) {
      if (targets.includes(box.dataset.override) && box.value.trim()) overrides[box.dataset.override] = { text: box.value };
    }
    const alts = {};
    for (const item of mediaItems()) alts[item.dataset.mediaId] = item.querySelector("[data-alt]").value;
    return { text: textBox.value, targets, overrides, media: mediaItems().map((i) => Number(i.dataset.mediaId)), alts };
  };

  // -- previews --------------------------------------------------------------------------------
  const showPreviews = () => {
    const targets = ticked();
    for (const preview of form.querySelectorAll("[data-preview]")) preview.hidden = !targets.includes(preview.dataset.preview);
    document.getElementById("no-preview").hidden = targets.length > 0;
  };

  const renderText = (container, preview) => {
    container.replaceChildren(...preview.segments.map((s) => el("span", { class: `seg-${s.kind}${s.over ? " over" : ""}` }, s.text)));
    if (preview.seeMore) container.append(el("span", { class: "see-more" }, "… See more"));
  };

  const renderMedia = () => {
    for (const box of form.querySelectorAll("[data-preview-media]")) {
      const figures = mediaItems().map((item) => {
        const alt = item.querySelector("[data-alt]").value.trim();
        const figure = el("figure", { class: "preview-image" });
        figure.append(el("img", { src: item.querySelector("img").getAttribute("src"), alt }));
        if (alt) figure.append(el("span", { class: "alt-badge" }, "ALT"));
        return figure;
      });
      box.replaceChildren(...figures);
      box.className = box.className.replace(/\bcount-\d+\b/, `count-${figures.length}`);
    }
  };

  const renderProblems = (problems, previews) => {
    const byTarget = {};
    const top = [];
    for (const problem of problems) {
      const preview = problem.target && form.querySelector(`[data-preview="${CSS.escape(problem.target)}"]`);
      if (preview) (byTarget[problem.target] ||= []).push(problem.message);
      else top.push(problem.message);
    }
    for (const preview of form.querySelectorAll("[data-preview]")) {
      const name = preview.dataset.preview;
      preview.querySelector("[data-problems]").replaceChildren(...(byTarget[name] || []).map((m) => el("li", {}, m)));
      const data = previews[name];
      if (!data) continue;
      renderText(preview.querySelector("[data-preview-text]"), data);
      preview.querySelector("[data-count]").textContent = data.count;
      preview.querySelector("[data-counter]").classList.toggle("over", data.count > data.limit);
    }
    general.replaceChildren(...top.filter(() => ticked().length).map((m) => el("p", {}, m)));
    general.hidden = general.childElementCount === 0;
    const count = problems.length;
    checkStatus.textContent = !ticked().length ? "" : count ? `${count} problem${count > 1 ? "s" : ""} to fix before publishing.` : "Ready to publish.";
  };

  const check = async () => {
    const mine = ++sequence;
    if (!ticked().length) { renderProblems([], {}); return; }
    try {
      const reply = await fetch(form.dataset.validateUrl, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
        body: JSON.stringify(draft()),
      });
      const body = await reply.json();
      if (mine !== sequence || !body.success) return;
      renderProblems(body.data.problems, body.data.previews);
    } catch (error) {
      if (mine === sequence) checkStatus.textContent = "Could not check the post just now; Publish checks it again.";
    }
  };

  const soon = () => { clearTimeout(timer); timer = setTimeout(check, DEBOUNCE_MS); };

  // -- images ----------------------------------------------------------------------------------
  const renumber = () => mediaItems().forEach((item, index) => {
    item.querySelector("label").textContent = `Alt text for image ${index + 1}`;
    item.querySelector("[data-remove-media]").textContent = `Remove image ${index + 1}`;
  });

  const addItem = (stored) => {
    const item = el("li", { class: "media-item", "data-media-id": stored.id });
    const field = el("div", { class: "field" });
    field.append(el("label", { for: `alt-${stored.id}` }), el("textarea", { id: `alt-${stored.id}`, name: `alt-${stored.id}`, rows: "2", "data-alt": "" }));
    item.append(el("img", { src: `${form.dataset.mediaView}${stored.id}`, alt: "", width: "96", height: "96" }),
      el("input", { type: "hidden", name: "media", value: stored.id }), field,
      el("button", { type: "button", class: "button secondary small", "data-remove-media": "" }));
    mediaList.append(item);
    renumber();
  };

  const upload = async (files) => {
    const room = maxImages - mediaItems().length;
    if (files.length > room) mediaStatus.textContent = `Up to ${maxImages} images: ${files.length - room} not added.`;
    for (const file of [...files].slice(0, Math.max(0, room))) {
      mediaStatus.textContent = `Uploading ${file.name}…`;
      const data = new FormData();
      data.append("file", file);
      try {
        const reply = await fetch(form.dataset.mediaUrl, { method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": csrf }, body: data });
        const body = await reply.json();
        if (!reply.ok) { mediaStatus.textContent = `${file.name}: ${body.message}`; continue; }
        addItem(body.data);
        mediaStatus.textContent = `${file.name} added. Describe it in its alt text field.`;
      } catch (error) {
        mediaStatus.textContent = `${file.name} could not be uploaded; try again.`;
      }
    }
    renderMedia();
    soon();
  };

  picker.addEventListener("change", () => { upload(picker.files); picker.value = ""; });
  dropzone.addEventListener("dragover", (event) => { event.preventDefault(); dropzone.classList.add("dragging"); });
  dropzone.addEventListener("dragleave", () => dropzone.classList.remove("dragging"));
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    dropzone.classList.remove("dragging");
    upload(event.dataTransfer.files);
  });
  mediaList.addEventListener("click", (event) => {
    const button = event.target.closest("[data-remove-media]");
    if (!button) return;
    button.closest("[data-media-id]").remove();
    renumber();
    renderMedia();
    mediaStatus.textContent = "Image removed.";
    picker.focus();
    soon();
  });

  // -- typing, ticking, publishing ---------------------------------------------------------------
  form.addEventListener("input", (event) => {
    if (event.target.matches("[data-alt]")) renderMedia();
    soon();
  });
  form.addEventListener("change", (event) => {
    if (event.target.matches("[data-target]")) { showPreviews(); soon(); }
  });
  // One click publishes once: the button stays pressed; the form's idempotency key covers a resubmit.
  form.addEventListener("submit", () => {
    const button = document.getElementById("publish-button");
    setTimeout(() => { button.disabled = true; button.textContent = "Publishing…"; }, 0);
  });

  applyRatios();
  showPreviews();
  if (ticked().length) check();
})();
