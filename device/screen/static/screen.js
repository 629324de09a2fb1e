// The door screen: renders the views the terminal sends (codes and parameters) in the catalogue's words,
// and draws the face guide from normalised landmark points. Never an image.
// A new kind of screen is one entry in RENDERERS and, in the terminal, one `screen` value in
// device/screen/state.py. The words follow device/screen/words.py (the browser tests compare them).
// The keypad posts each key to the terminal (POST /keypad with the page's token); the terminal keeps the
// digits and sends back how many PIN digits there are, never the PIN.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const HISTORY = 200;
const screen = {
  texts: {},
  settings: {},
  view: { screen: "idle", seq: 0 },
  views: [], // [{seq, screen, words, issued_ms, rendered_ms, painted_ms}] for tests and the latency bench
  guides: 0,
  connected: false,
};
window.doorScreen = screen;

const $ = (id) => document.getElementById(id);

function t(key, params) {
  const template = screen.texts[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (_, name) => String((params || {})[name] ?? ""));
}

const STEP_CODES = { turn_left: "challenge.turn_left", turn_right: "challenge.turn_right", blink: "challenge.blink" };

const WAYS = ["badge", "qr", "pin"];

// The credentials the door takes, in words (words.py `ways`).
function ways(v) {
  const named = WAYS.filter((kind) => (v.takes || []).includes(kind)).map((kind) => t(`way.${kind}`));
  if (named.length < 2) return named[0] || "";
  return t("way.list", { first: named.slice(0, -1).join(", "), last: named[named.length - 1] });
}

function idleWords(v) {
  if (!v.mode || v.mode === "face" || !(v.takes || []).length) return t("screen.look");
  return t(`idle.${v.mode}`, { ways: ways(v) });
}

function alternativeWords(v) {
  if (v.alternative_door) return t("way.door", { door: v.alternative_door });
  if ((v.mode === "credential" || v.mode === "face|credential") && (v.takes || []).length) return ways(v);
  return screen.settings.alternative;
}

// What a view says: {headline, before, detail, banner}, as device/screen/words.py says it.
function words(v) {
  const banner = v.enrolment ? t("enrol.started", { name: v.enrolment }) : null;
  switch (v.screen) {
    case "idle":
      return { headline: banner || idleWords(v) };
    case "keypad":
      return { headline: t(`keypad.${v.keypad || "number"}`), banner };
    case "look":
      return { headline: t("access.look"), banner };
    case "positioning":
      return { headline: v.hint ? t(v.hint) : t("screen.hold"), banner };
    case "challenge":
      if (!STEP_CODES[v.step]) return { headline: t("challenge.retry"), banner }; // a retry before its step
      return { headline: t(STEP_CODES[v.step]), before: v.retry ? t("challenge.retry") : null, banner };
    case "checking":
      return { headline: t(v.outcome || "challenge.passed"), banner };
    case "enrol":
      if (v.outcome === "enrol.failed") {
        return { headline: t("enrol.failed", { reason: t(v.reason || "enrol.timeout") }) };
      }
      return { headline: t("enrol.done") };
    default: {
      const outcome = v.outcome || "result.rejected";
      if (outcome === "result.welcome") {
        return { headline: v.name ? t("result.welcome", { name: v.name }) : t("screen.welcome") };
      }
      if (outcome === "result.not_recognised") {
        return { headline: t(outcome, { alternative: alternativeWords(v) }), banner };
      }
      if (outcome === "access.claim_first") return { headline: t(outcome, { ways: ways(v) }), banner };
      if (outcome === "result.rejected") {
        const headline = v.reason ? t(outcome, { reason: t(v.reason) }) : t("screen.rejected");
        return { headline, detail: v.hint ? t(v.hint) : null, banner };
      }
      return { headline: t(outcome), banner };
    }
  }
}

// ---- per-screen extras (the words are common) ---------------------------------------------------------
let countdownTimer = null;

function stopCountdown() {
  if (countdownTimer !== null) clearInterval(countdownTimer);
  countdownTimer = null;
  $("countdown").textContent = "";
  $("ring").style.strokeDashoffset = "0";
}

// The ring and the seconds move ten times a second, not every frame: the page shares the terminal's CPU.
function startCountdown(seconds) {
  const start = Date.now();
  const tick = () => {
    const gone = Math.min(1, (Date.now() - start) / (seconds * 1000));
    const left = Math.max(0, Math.ceil(seconds * (1 - gone)));
    const text = t("screen.seconds", { seconds: left });
    if ($("countdown").textContent !== text) $("countdown").textContent = text;
    $("ring").style.strokeDashoffset = (gone * 100).toFixed(1);
  };
  tick();
  countdownTimer = setInterval(tick, 100);
}

function icon(v) {
  if (v.screen === "enrol") return v.outcome === "enrol.done" ? "ok" : "no";
  if (v.screen !== "result") return null;
  if (v.outcome === "result.rejected") return "no";
  if (v.outcome === "result.not_recognised" || v.outcome === "access.claim_first") return "unknown";
  return "ok";
}

const RENDERERS = {
  idle() { clearGuide(); },
  positioning() {},
  challenge(v) {
    const dots = [];
    for (let i = 1; i <= v.steps; i++) dots.push(i < v.step_index ? "●" : i === v.step_index ? "◉" : "○");
    $("dots").textContent = dots.join("");
    if (v.steps) $("step").textContent = t("screen.step", { index: Math.max(v.step_index, 1), steps: v.steps });
    if (v.deadline_s > 0) startCountdown(v.deadline_s);
  },
  checking() {},
  result() { clearGuide(); },
  enrol() { clearGuide(); },
  look() { clearGuide(); },
  keypad(v) {
    clearGuide();
    const pin = v.keypad === "pin";
    $("keypad-number").textContent = pin ? `${v.typed} · ` : "";
    $("keypad-typed").textContent = pin ? "●".repeat(v.masked || 0) : v.typed || "";
  },
};

// ---- the keypad: every key to the terminal, nothing kept here ---------------------------------------------
async function press(key) {
  try {
    await fetch("/keypad", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Keypad-Token": screen.settings.keypad_token },
      body: JSON.stringify({ key }),
      cache: "no-store",
    });
  } catch (error) {
    // the terminal is away: the offline banner says so
  }
}

function keypadLabels() {
  $("key-back").textContent = "⌫";
  $("key-back").setAttribute("aria-label", t("keypad.back"));
  $("key-ok").textContent = t("keypad.ok");
  $("keypad-open").textContent = t("keypad.open");
  $("keypad-cancel").textContent = t("keypad.cancel");
  $("go-in").textContent = t("direction.in");
  $("go-out").textContent = t("direction.out");
  for (const button of document.querySelectorAll("button[data-key]")) {
    button.addEventListener("click", () => press(button.dataset.key));
  }
}

function render(v) {
  const w = words(v);
  const body = document.body;
  stopCountdown();
  $("dots").textContent = "";
  $("step").textContent = "";
  $("message").textContent = w.headline;
  $("before").textContent = w.before || "";
  $("detail").textContent = w.detail || "";
  $("banner").textContent = w.banner || "";
  $("banner").hidden = !w.banner;
  body.dataset.screen = v.screen;
  body.dataset.seq = String(v.seq);
  body.dataset.keypadOk = v.keypad_ok ? "1" : "0";
  body.dataset.direction = v.direction || "";
  $("go-in").setAttribute("aria-pressed", v.chosen === "in" ? "true" : "false");
  $("go-out").setAttribute("aria-pressed", v.chosen === "out" ? "true" : "false");
  for (const [key, value] of [["step", v.step], ["hint", v.hint], ["outcome", v.outcome], ["icon", icon(v)]]) {
    if (value) body.dataset[key] = value;
    else delete body.dataset[key];
  }
  (RENDERERS[v.screen] || (() => {}))(v);
  return w;
}

// ---- the face guide: points mirrored (a mirror is what people expect), the frame's centre on the stage --
function clearGuide() {
  for (const dot of $("face-points").children) dot.setAttribute("r", "0");
  const oval = $("face-oval");
  oval.setAttribute("rx", "0");
  oval.setAttribute("ry", "0");
}

function drawGuide(g) {
  if (g.track !== screen.view.track) return;
  screen.guides += 1;
  const aspect = g.aspect || 4 / 3;
  // Frame height spans the stage; x is centred, so a face off-centre in the frame is off-centre here.
  const sx = (x) => 50 - (x - 0.5) * 100 * aspect;
  const sy = (y) => y * 100;
  const [x0, y0, x1, y1] = g.box;
  const oval = $("face-oval");
  oval.setAttribute("cx", sx((x0 + x1) / 2).toFixed(1));
  oval.setAttribute("cy", sy((y0 + y1) / 2).toFixed(1));
  oval.setAttribute("rx", (((x1 - x0) * 100 * aspect) / 2).toFixed(1));
  oval.setAttribute("ry", (((y1 - y0) * 100) / 2 * 1.15).toFixed(1));
  // The dots are made once and moved after (no DOM churn at 15 updates a second).
  const group = $("face-points");
  while (group.children.length < g.points.length) group.appendChild(document.createElementNS(SVG, "circle"));
  [...group.children].forEach((dot, i) => {
    const point = g.points[i];
    dot.setAttribute("r", point ? "0.9" : "0");
    if (point) {
      dot.setAttribute("cx", sx(point[0]).toFixed(1));
      dot.setAttribute("cy", sy(point[1]).toFixed(1));
    }
  });
}

// ---- the channel ----------------------------------------------------------------------------------------
function onView(event) {
  const received = Date.now();
  const v = JSON.parse(event.data);
  screen.view = v;
  const w = render(v);
  const entry = { seq: v.seq, screen: v.screen, view: v, words: w, issued_ms: v.issued_ms || null, rendered_ms: received };
  screen.views.push(entry);
  if (screen.views.length > HISTORY) screen.views.shift();
  // Two frames later the change has been painted: that is when it is on the screen.
  requestAnimationFrame(() => requestAnimationFrame(() => { entry.painted_ms = Date.now(); }));
}

function connect() {
  const source = new EventSource("/events");
  let lost = null;
  source.addEventListener("open", () => {
    screen.connected = true;
    document.body.dataset.connected = "1";
    if (lost !== null) clearTimeout(lost);
    lost = null;
    $("offline").hidden = true;
  });
  source.addEventListener("error", () => {
    screen.connected = false;
    document.body.dataset.connected = "0";
    // EventSource reconnects by itself; say so only if it takes a moment (a service restart).
    if (lost === null) lost = setTimeout(() => { $("offline").hidden = false; }, 2000);
  });
  source.addEventListener("view", onView);
  source.addEventListener("guide", (event) => drawGuide(JSON.parse(event.data)));
}

function clock() {
  const now = new Date();
  const lang = screen.settings.language || "en";
  const time = now.toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit" });
  const date = now.toLocaleDateString(lang, { weekday: "short", day: "numeric", month: "short" });
  $("clock").textContent = `${date} ${time}`;
  $("big-time").textContent = time;
  $("big-date").textContent = now.toLocaleDateString(lang, { weekday: "long", day: "numeric", month: "long" });
}

async function start() {
  const response = await fetch("/messages.json", { cache: "no-store" });
  screen.settings = await response.json();
  screen.texts = screen.settings.texts;
  document.documentElement.lang = screen.settings.language;
  $("site").textContent = screen.settings.site_name;
  $("site-big").textContent = screen.settings.site_name;
  $("offline").textContent = t("screen.offline");
  keypadLabels();
  clock();
  setInterval(clock, 1000);
  render(screen.view);
  connect();
}

start().catch(() => setTimeout(() => location.reload(), 2000));
