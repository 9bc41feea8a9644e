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
