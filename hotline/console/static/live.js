// Live calls: server-sent events from /console/api/live. A "snapshot" (the calls in progress)
// comes first on every (re)connection, then each event as it happens. Everything a caller said
// is put on the page with textContent: never parsed as HTML.
"use strict";

(() => {
  const grid = document.getElementById("live-calls");
  if (!grid) return;
  const template = document.getElementById("live-call-template");
  const statusLine = document.getElementById("live-status");
  const empty = document.getElementById("live-empty");
  const cards = new Map();

  function who(speaker) {
    return speaker === "caller" ? "Người gọi" : "Tổng đài";
  }

  function addTurn(card, turn) {
    const list = card.querySelector(".live-turns");
    const li = document.createElement("li");
    li.className = turn.speaker === "caller" ? "caller" : "bot";
    const name = document.createElement("span");
    name.className = "who";
    name.textContent = who(turn.speaker) + ":";
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = turn.kind === "dtmf" ? "phím " + (turn.text || "") : turn.text || "";
    li.append(name, text);
    if (turn.intent) {
      const intent = document.createElement("span");
      intent.className = "tag";
      const conf = typeof turn.confidence === "number" ? " " + Math.round(turn.confidence * 100) + "%" : "";
      intent.textContent = (intentLabels[turn.intent] || turn.intent) + conf;
      li.append(" ", intent);
    }
    list.append(li);
    list.scrollTop = list.scrollHeight;
  }

  // Intents by their Vietnamese names (the page carries the table).
  let intentLabels = {};
  try {
    intentLabels = JSON.parse(document.getElementById("live-calls").dataset.intentLabels || "{}");
  } catch (e) { intentLabels = {}; }

  function card(callSid, summary) {
    let c = cards.get(callSid);
    if (!c) {
      c = template.content.firstElementChild.cloneNode(true);
      c.dataset.callSid = callSid;
      c.querySelector(".live-link").href = "/console/calls/" + encodeURIComponent(callSid);
      grid.append(c);
      cards.set(callSid, c);
    }
    if (summary) {
      if (summary.caller !== undefined) c.querySelector(".live-caller").textContent = summary.caller || "Số ẩn";
      if (summary.state) c.querySelector(".live-state").textContent = "đang nói chuyện với máy";
    }
    refreshEmpty();
    return c;
  }

  function refreshEmpty() {
    empty.hidden = cards.size > 0;
  }

  function handle(ev) {
    if (ev.type === "snapshot") {
      // Ended calls stay until the operator dismisses them (the stream reconnects often).
      for (const [sid, c] of Array.from(cards.entries())) {
        if (!c.dataset.ended) { c.remove(); cards.delete(sid); }
      }
      for (const call of ev.calls || []) {
        const c = card(call.call_sid, call);
        for (const t of call.turns || []) addTurn(c, t);
        c.querySelector(".live-partial").textContent = call.partial || "";
      }
      refreshEmpty();
      return;
    }
    const sid = ev.call_sid;
    if (!sid) return;
    if (ev.type === "call_ended") {
      const c = cards.get(sid);
      if (c) {
        c.querySelector(".live-state").textContent = "đã kết thúc";
        c.querySelector(".live-partial").textContent = "";
        c.dataset.ended = "1";
        // It stays until dismissed, so the last words can be read and the call opened.
        if (!c.querySelector("button.dismiss")) {
          const b = document.createElement("button");
          b.type = "button";
          b.className = "dismiss";
          b.textContent = "Đóng thẻ";
          b.addEventListener("click", () => { c.remove(); cards.delete(sid); refreshEmpty(); });
          const bar = document.createElement("p");
          bar.className = "live-actions";
          bar.append(b);
          c.append(bar);
        }
      }
      return;
    }
    const c = card(sid, ev.type === "call_started" ? ev : null);
    if (ev.type === "turn") {
      addTurn(c, ev);
      if (ev.speaker === "caller") c.querySelector(".live-partial").textContent = "";
    } else if (ev.type === "partial") {
      c.querySelector(".live-partial").textContent = ev.text ? "… " + ev.text : "";
    } else if (ev.type === "state") {
      // Flow state ids are for developers; operators see that the bot is talking.
      c.querySelector(".live-state").textContent = "đang nói chuyện với máy";
    } else if (ev.type === "ticket") {
      const li = document.createElement("li");
      li.textContent = "Đã tạo phiếu " + (ev.code || "");
      c.querySelector(".live-turns").append(li);
    } else if (ev.type === "barge_in") {
      c.querySelector(".live-state").textContent = "người gọi ngắt lời";
    }
  }

  const source = new EventSource(grid.dataset.source);
  source.onopen = () => { statusLine.textContent = "Đang nhận trực tiếp."; };
  source.onerror = () => {
    // A refused stream (401: the session ended) is not retried by the browser.
    statusLine.textContent = source.readyState === EventSource.CLOSED
      ? "Đã ngắt. Phiên đăng nhập có thể đã hết: hãy tải lại trang."
      : "Mất kết nối, đang kết nối lại…";
  };
  source.onmessage = (message) => {
    try {
      handle(JSON.parse(message.data));
    } catch (err) {
      console.warn("live event skipped", err);
    }
  };
})();
