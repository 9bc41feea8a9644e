// "Gọi thử": a browser telephone that speaks Twilio's Media Streams protocol to /twilio/media,
// so a test call runs through exactly the code a real call does.
//
// Out: connected, start (customParameters: the callSid and stream credential the server issued
// when it placed the call), media every 20 ms (160 bytes of 8 kHz mu-law, base64;
// sequenceNumber, chunk and timestamp as strings, as Twilio sends them), dtmf from the keypad,
// mark echoes, stop.
// In: media (played through WebAudio), mark (echoed once the audio queued before it has
// played), clear (queued audio dropped, pending marks echoed at once).
"use strict";

(() => {
  // --- G.711 mu-law: the same arithmetic as hotline/audio.py (CPython audioop's) -------------
  const SEG_END = [0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff, 0x1fff];

  function encodeSample(sample) {
    // sample: int16
    const value = sample >> 2;
    const negative = value < 0;
    const magnitude = Math.min(negative ? -value : value, 8159) + 33;
    let seg = 0;
    while (seg < 8 && magnitude > SEG_END[seg]) seg++;
    const mask = negative ? 0x7f : 0xff;
    if (seg >= 8) return (0x7f ^ mask) & 0xff;
    return (((seg << 4) | ((magnitude >> (seg + 1)) & 0x0f)) ^ mask) & 0xff;
  }

  const DECODE = new Int16Array(256);
  for (let code = 0; code < 256; code++) {
    const u = ~code & 0xff;
    const exponent = (u >> 4) & 0x07;
    const mantissa = u & 0x0f;
    const magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    DECODE[code] = u & 0x80 ? -magnitude : magnitude;
  }

  // Exposed so the tests can compare this codec with the server's tables.
  window.HotlineMulaw = { encodeSample, decode: (code) => DECODE[code & 0xff] };

  // --- resampling the microphone to 8 kHz ------------------------------------------------------
  // A windowed-sinc low-pass (cut at 3.6 kHz, under the 4 kHz Nyquist of 8 kHz) then linear
  // interpolation at the output instants. Good enough for speech on a telephone line.
  class Downsampler {
    constructor(inRate, outRate = 8000, taps = 63) {
      this.step = inRate / outRate;
      const fc = Math.min(3600, outRate * 0.45) / inRate;
      const h = new Float32Array(taps);
      let sum = 0;
      for (let n = 0; n < taps; n++) {
        const m = n - (taps - 1) / 2;
        const sinc = m === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * m) / (Math.PI * m);
        const window = 0.54 - 0.46 * Math.cos((2 * Math.PI * n) / (taps - 1));
        h[n] = sinc * window;
        sum += h[n];
      }
      for (let n = 0; n < taps; n++) h[n] /= sum;
      this.h = h;
      this.history = new Float32Array(taps - 1);
      this.pos = 0; // next output instant, in filtered-sample units of the current block
      this.last = 0; // the previous block's last filtered sample (index -1)
    }

    process(input) {
      const h = this.h;
      const taps = h.length;
      const n = input.length;
      const buf = new Float32Array(this.history.length + n);
      buf.set(this.history, 0);
      buf.set(input, this.history.length);
      const y = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        let acc = 0;
        for (let k = 0; k < taps; k++) acc += h[k] * buf[i + k];
        y[i] = acc;
      }
      this.history = buf.slice(n);
      const out = [];
      while (Math.floor(this.pos) <= n - 2) {
        const i = Math.floor(this.pos);
        const frac = this.pos - i;
        const a = i < 0 ? this.last : y[i];
        const b = y[i + 1];
        out.push(a + (b - a) * frac);
        this.pos += this.step;
      }
      this.pos -= n;
      this.last = y[n - 1];
      return out;
    }
  }
  window.HotlineDownsampler = Downsampler;

  const root = document.getElementById("phone");
  if (!root) return;

  const $ = (id) => document.getElementById(id);
  const startButton = $("call-start");
  const stopButton = $("call-stop");
  const statusLine = $("call-status");
  const micWarning = $("mic-warning");
  const level = $("mic-level");
  const keys = Array.from(root.querySelectorAll(".key"));
  const transcript = $("call-transcript");
  const partialLine = $("call-partial");
  const counters = {
    sent: $("frames-sent"),
    received: $("frames-received"),
    marks: $("marks-echoed"),
    clears: $("clears"),
  };

  const FRAME = 160; // 20 ms at 8 kHz
  let call = null;

  function randomHex(bytes) {
    const a = new Uint8Array(bytes);
    crypto.getRandomValues(a);
    return Array.from(a, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function setStatus(text) {
    statusLine.textContent = text;
  }

  function b64(bytes) {
    let s = "";
    for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s);
  }

  function unb64(text) {
    const s = atob(text);
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }

  class Call {
    constructor() {
      this.callSid = "";
      this.parameters = {};
      this.streamSid = "MZ" + randomHex(16);
      this.accountSid = "AC" + "0".repeat(32);
      this.seq = 0;
      this.chunk = 0;
      this.pcm = []; // 8 kHz int16 samples waiting to fill a frame
      this.marks = []; // {name, at}: echoed when ctx.currentTime reaches `at`
      this.sources = new Set();
      this.nextTime = 0;
      this.counts = { sent: 0, received: 0, marks: 0, clears: 0 };
      this.ended = false;
    }

    // The server places the call and issues its single-use stream credential, as Twilio's
    // signed voice webhook does for a phone call; the stream's start carries it back.
    async placeCall() {
      const body = new URLSearchParams({ csrf: root.dataset.csrf });
      const r = await fetch(root.dataset.callApi, { method: "POST", body, credentials: "same-origin" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      const placed = await r.json();
      this.callSid = placed.callSid;
      this.parameters = placed.parameters;
      root.dataset.callSid = this.callSid;
    }

    send(message) {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
    }

    nextSeq() {
      this.seq += 1;
      return String(this.seq);
    }

    count(name) {
      this.counts[name] += 1;
      counters[name].textContent = String(this.counts[name]);
    }

    async start() {
      this.ctx = new AudioContext();
      await this.ctx.resume();
      await this.openMic();
      await this.placeCall();
      this.watchTranscript();
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      this.ws = new WebSocket(scheme + "//" + location.host + root.dataset.streamPath);
      this.ws.onopen = () => this.onOpen();
      this.ws.onmessage = (e) => this.onMessage(e.data);
      this.ws.onclose = () => this.onClose();
      this.ws.onerror = () => setStatus("Không kết nối được tới tổng đài.");
      this.markTimer = setInterval(() => this.echoDueMarks(), 10);
    }

    async openMic() {
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !this.ctx.audioWorklet) {
        this.micless("Trình duyệt chỉ cho dùng micro trên trang https hoặc localhost.");
        return;
      }
      try {
        this.stream = await navigator.mediaDevices.getUserMedia({
          audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
        });
      } catch (err) {
        this.micless("Không mở được micro (" + (err && err.name ? err.name : "lỗi") + ").");
        return;
      }
      await this.ctx.audioWorklet.addModule(root.dataset.worklet);
      this.down = new Downsampler(this.ctx.sampleRate);
      this.source = this.ctx.createMediaStreamSource(this.stream);
      this.node = new AudioWorkletNode(this.ctx, "mic-capture");
      this.node.port.onmessage = (e) => this.onMic(e.data);
      this.source.connect(this.node);
      // Not to the speakers: a silent sink keeps the graph pulling samples through the node.
      const mute = this.ctx.createGain();
      mute.gain.value = 0;
      this.node.connect(mute).connect(this.ctx.destination);
    }

    micless(reason) {
      // Without a microphone the line still carries audio (silence), as a phone's would, so
      // the keypad can be used to test flows.
      micWarning.textContent = reason + " Cuộc gọi vẫn chạy, gửi im lặng: dùng bàn phím.";
      micWarning.hidden = false;
      this.silenceStart = performance.now();
      this.silenceTimer = setInterval(() => {
        const due = Math.floor((performance.now() - this.silenceStart) / 20);
        while (this.started && this.chunk < due) this.sendFrame(new Uint8Array(FRAME).fill(0xff));
      }, 20);
    }

    onMic(block) {
      if (!this.started || this.ended) return;
      let peak = 0;
      for (let i = 0; i < block.length; i++) peak = Math.max(peak, Math.abs(block[i]));
      level.style.width = Math.min(100, Math.round(peak * 140)) + "%";
      for (const v of this.down.process(block)) {
        this.pcm.push(Math.max(-32768, Math.min(32767, Math.round(v * 32767))));
      }
      while (this.pcm.length >= FRAME) {
        const frame = new Uint8Array(FRAME);
        for (let i = 0; i < FRAME; i++) frame[i] = encodeSample(this.pcm[i]);
        this.pcm.splice(0, FRAME);
        this.sendFrame(frame);
      }
    }

    sendFrame(ulaw) {
      this.chunk += 1;
      this.send({
        event: "media",
        sequenceNumber: this.nextSeq(),
        media: {
          track: "inbound",
          chunk: String(this.chunk),
          timestamp: String((this.chunk - 1) * 20),
          payload: b64(ulaw),
        },
        streamSid: this.streamSid,
      });
      this.count("sent");
    }

    onOpen() {
      this.send({ event: "connected", protocol: "Call", version: "1.0.0" });
      this.send({
        event: "start",
        sequenceNumber: this.nextSeq(),
        start: {
          accountSid: this.accountSid,
          streamSid: this.streamSid,
          callSid: this.callSid,
          tracks: ["inbound"],
          mediaFormat: { encoding: "audio/x-mulaw", sampleRate: 8000, channels: 1 },
          customParameters: this.parameters,
        },
        streamSid: this.streamSid,
      });
      this.started = true;
      if (this.silenceTimer) this.silenceStart = performance.now();
      setStatus("Đang gọi…");
      stopButton.disabled = false;
      for (const k of keys) k.disabled = false;
    }

    onMessage(data) {
      let msg;
      try {
        msg = JSON.parse(data);
      } catch {
        return;
      }
      if (msg.event === "media" && msg.media && msg.media.payload) {
        this.play(unb64(msg.media.payload));
        this.count("received");
        if (this.counts.received === 1) setStatus("Đã kết nối. Hãy nói vào micro hoặc bấm phím.");
      } else if (msg.event === "mark" && msg.mark) {
        const at = Math.max(this.nextTime, this.ctx.currentTime);
        this.marks.push({ name: msg.mark.name, at });
        this.echoDueMarks();
      } else if (msg.event === "clear") {
        this.count("clears");
        for (const s of this.sources) {
          try { s.stop(); } catch { /* already ended */ }
        }
        this.sources.clear();
        this.nextTime = this.ctx.currentTime;
        const pending = this.marks.splice(0);
        for (const m of pending) this.echoMark(m.name);
      }
    }

    play(ulaw) {
      const samples = new Float32Array(ulaw.length);
      for (let i = 0; i < ulaw.length; i++) samples[i] = DECODE[ulaw[i]] / 32768;
      const buffer = this.ctx.createBuffer(1, samples.length, 8000);
      buffer.copyToChannel(samples, 0);
      const src = this.ctx.createBufferSource();
      src.buffer = buffer;
      src.connect(this.ctx.destination);
      const now = this.ctx.currentTime;
      if (this.nextTime < now + 0.01) this.nextTime = now + 0.05; // a little jitter buffer
      src.start(this.nextTime);
      this.nextTime += buffer.duration;
      this.sources.add(src);
      src.onended = () => this.sources.delete(src);
    }

    echoDueMarks() {
      if (!this.ctx) return;
      while (this.marks.length && this.marks[0].at <= this.ctx.currentTime) {
        this.echoMark(this.marks.shift().name);
      }
    }

    echoMark(name) {
      this.send({
        event: "mark",
        sequenceNumber: this.nextSeq(),
        streamSid: this.streamSid,
        mark: { name },
      });
      this.count("marks");
    }

    dtmf(digit) {
      if (!this.started || this.ended) return;
      this.send({
        event: "dtmf",
        streamSid: this.streamSid,
        sequenceNumber: this.nextSeq(),
        dtmf: { track: "inbound_track", digit },
      });
    }

    hangUp() {
      if (this.ended) return;
      this.send({
        event: "stop",
        sequenceNumber: this.nextSeq(),
        streamSid: this.streamSid,
        stop: { accountSid: this.accountSid, callSid: this.callSid },
      });
      this.byUs = true;
      if (this.ws) this.ws.close(1000);
      this.cleanup();
      setStatus("Đã kết thúc cuộc gọi.");
    }

    onClose() {
      if (!this.ended) {
        this.cleanup();
        setStatus(this.started ? "Tổng đài đã kết thúc cuộc gọi." : "Tổng đài từ chối kết nối (hãy đăng nhập lại).");
      }
    }

    cleanup() {
      this.ended = true;
      clearInterval(this.markTimer);
      clearInterval(this.silenceTimer);
      for (const s of this.sources) {
        try { s.stop(); } catch { /* already ended */ }
      }
      if (this.stream) for (const t of this.stream.getTracks()) t.stop();
      if (this.ctx) this.ctx.close();
      if (this.events) setTimeout(() => this.events.close(), 3000);
      level.style.width = "0";
      startButton.disabled = false;
      stopButton.disabled = true;
      for (const k of keys) k.disabled = true;
      const link = $("call-link");
      if (this.started) {
        link.querySelector("a").href = "/console/calls/" + encodeURIComponent(this.callSid);
        link.hidden = false;
      }
      root.dataset.state = "ended";
    }

    watchTranscript() {
      // What the hotline heard and said, from the same live feed as the Trực tiếp page. Opened
      // before the call so no event is missed; on every (re)connection the snapshot redraws it.
      this.events = new EventSource("/console/api/live");
      this.events.onmessage = (message) => {
        let ev;
        try {
          ev = JSON.parse(message.data);
        } catch {
          return;
        }
        if (ev.type === "snapshot") {
          const mine = (ev.calls || []).find((c) => c.call_sid === this.callSid);
          if (mine) {
            transcript.textContent = "";
            for (const t of mine.turns || []) addTurn(t);
            partialLine.textContent = mine.partial ? "… " + mine.partial : "";
          }
          return;
        }
        if (ev.call_sid !== this.callSid) return;
        if (ev.type === "turn") {
          addTurn(ev);
          if (ev.speaker === "caller") partialLine.textContent = "";
        } else if (ev.type === "partial") {
          partialLine.textContent = ev.text ? "… " + ev.text : "";
        }
      };
    }
  }

  function addTurn(t) {
    addLine(t.speaker, t.kind === "dtmf" ? "phím " + (t.text || "") : t.text || "", t.intent);
  }

  function addLine(speaker, text, intent) {
    const li = document.createElement("li");
    li.className = speaker === "caller" ? "caller" : "bot";
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = (speaker === "caller" ? "Bạn" : "Tổng đài") + ":";
    const body = document.createElement("span");
    body.textContent = text;
    li.append(who, body);
    if (intent) {
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = intent;
      li.append(" ", tag);
    }
    transcript.append(li);
    transcript.scrollTop = transcript.scrollHeight;
  }

  startButton.addEventListener("click", async () => {
    startButton.disabled = true;
    micWarning.hidden = true;
    transcript.textContent = "";
    $("call-link").hidden = true;
    for (const c of Object.values(counters)) c.textContent = "0";
    setStatus("Đang kết nối…");
    root.dataset.state = "calling";
    call = new Call();
    try {
      await call.start();
    } catch (err) {
      setStatus("Không gọi được: " + (err && err.message ? err.message : err));
      call.cleanup();
    }
  });
  stopButton.addEventListener("click", () => call && call.hangUp());
  for (const k of keys) {
    k.addEventListener("click", () => {
      if (call) call.dtmf(k.dataset.digit);
      k.classList.add("pressed");
      setTimeout(() => k.classList.remove("pressed"), 150);
    });
  }
  document.addEventListener("keydown", (e) => {
    if (!call || call.ended || e.ctrlKey || e.metaKey || e.altKey) return;
    const tag = e.target && e.target.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") return;
    if (/^[0-9*#]$/.test(e.key)) {
      e.preventDefault();
      const key = keys.find((k) => k.dataset.digit === e.key);
      if (key) key.click();
    }
  });
  window.addEventListener("pagehide", () => call && call.hangUp());
})();
