// The console's small amount of script: seeking the recording from the transcript, and a back
// button on error pages. Everything works without it except seeking.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll("[data-back]")) {
    if (history.length > 1) {
      b.hidden = false;
      b.addEventListener("click", () => history.back());
    }
  }

  // A status note is read aloud to callers: say so before it is saved.
  for (const form of document.querySelectorAll("form[data-confirm-note]")) {
    form.addEventListener("submit", (ev) => {
      const note = form.querySelector("textarea[name=note]");
      if (note && note.value.trim() && !window.confirm(form.dataset.confirmNote)) {
        ev.preventDefault();
      }
    });
  }

  // A response template fills the status note; the operator can still edit it.
  for (const picker of document.querySelectorAll("select.template-picker")) {
    picker.addEventListener("change", () => {
      const target = document.getElementById(picker.dataset.target);
      if (target && picker.value) target.value = picker.value;
    });
  }

  // Charts open on their recent end (the right) on narrow screens.
  for (const box of document.querySelectorAll(".chart-scroll")) {
    box.scrollLeft = box.scrollWidth;
  }

  // Playback speed for the recording.
  for (const b of document.querySelectorAll("button[data-rate]")) {
    b.addEventListener("click", () => {
      const audio = document.getElementById(b.dataset.player || "player");
      if (!audio) return;
      audio.playbackRate = Number(b.dataset.rate);
      for (const o of document.querySelectorAll("button[data-rate]")) {
        o.setAttribute("aria-pressed", String(o === b));
      }
    });
  }

  const player = document.getElementById("player");
  if (!player) return;
  const turns = Array.from(document.querySelectorAll(".turn[data-start-ms]"));

  // Clicking a turn's time plays the recording from the start of that turn.
  for (const button of document.querySelectorAll("button.seek[data-ms]")) {
    button.addEventListener("click", () => {
      const seconds = Number(button.dataset.ms) / 1000;
      const go = () => {
        player.currentTime = seconds;
        const played = player.play();
        if (played && played.catch) played.catch(() => {});
      };
      if (player.readyState >= 1) go();
      else {
        player.addEventListener("loadedmetadata", go, { once: true });
        player.load();
      }
    });
  }

  // Mark the turn being heard, so the transcript follows the recording.
  let current = null;
  player.addEventListener("timeupdate", () => {
    const ms = player.currentTime * 1000;
    let found = null;
    for (const t of turns) {
      if (Number(t.dataset.startMs) <= ms) found = t;
    }
    if (found !== current) {
      if (current) current.classList.remove("playing");
      if (found) found.classList.add("playing");
      current = found;
    }
  });
});
