// The back office page: what the signed-in role may see and do (the server checks every request again).
"use strict";
let me = null;
let site = null;
let people = [];
let consentText = null;
const $ = (id) => document.getElementById(id);
const can = (perm) => !!me && me.permissions.includes(perm);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const k of kids) e.append(k);
  return e;
};
const num = (v, digits = 3) => (typeof v === "number" ? v.toFixed(digits) : "-");
// Any stored time renders: one that is no date (null, 1e18 s, text) shows as "?", it never stops the page.
const localTime = (t) => {
  const d = new Date(typeof t === "number" ? t * 1000 : NaN);
  return isNaN(d) ? "?" : d.toLocaleString("sv-SE", {timeZone: site.time_zone});
};
const nameOf = (id) => {
  const p = people.find((s) => s.id === id);
  return p && p.display_name ? `${p.display_name} (${id})` : id;
};

async function api(path, options = {}) {
  const init = {method: options.method || "GET", headers: {}};
  if (options.body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  if (init.method !== "GET" && me && me.csrf) init.headers["X-CSRF-Token"] = me.csrf;
  const r = await fetch(path, init);
  if (r.status === 401) { location.href = "login"; throw new Error("logged out"); }
  const body = (r.headers.get("content-type") || "").includes("json") ? await r.json() : await r.text();
  if (!r.ok) { const e = new Error(body.error || r.statusText); e.body = body; e.status = r.status; throw e; }
  return body;
}

// ---- live events ------------------------------------------------------------------------------------

function verdict(ev) {
  if (ev.decision !== "accepted") return ["rejected", "not let through"];
  return ev.subject ? ["recognised", "recognised"] : ["unknown", "unknown"];
}

function scoreLine(ev) {
  if (typeof ev.score !== "number") return ev.decision === "accepted" ? "no score" : "";
  if (ev.corrected) return `the match (score ${num(ev.score)}, threshold ${num(ev.threshold)}) was corrected by hand`;
  if (typeof ev.threshold !== "number") return `score ${num(ev.score)} (${ev.match_source})`;
  const diff = ev.score - ev.threshold;
  return `score ${num(ev.score)} · threshold ${num(ev.threshold)} (${num(Math.abs(diff))} ${diff > 0 ? "above" : "below"}, ${ev.match_source})`;
}

function card(ev) {
  const thumb = el("div", {class: "thumb"});
  if (ev.thumbnail) {
    const img = el("img", {alt: "face thumbnail", src: `api/events/${ev.event_id}/thumbnail`});
    img.onload = () => img.setAttribute("data-loaded", "1");
    thumb.append(img);
  } else {
    thumb.append(!can("events.biometric") ? "thumbnail not shown to your role" : ev.live ? "no thumbnail sent" : "thumbnail not kept");
  }
  const [kind, label] = verdict(ev);
  const who = kind === "rejected" ? "not let through" : ev.subject ? nameOf(ev.subject) : "unknown person";
  const info = el("div", {},
    el("span", {class: `verdict v-${kind}`}, label),
    el("div", {class: "who"}, who),
    el("div", {class: "small"}, scoreLine(ev)),
    el("div", {class: "small"}, `${ev.terminal} · ${ev.time_local}`));
  if (ev.nearest && can("events.biometric")) {
    const margin = typeof ev.margin === "number" ? ` · margin to the next ${num(ev.margin)}` : "";
    info.append(el("div", {class: "near"}, `nearest: ${nameOf(ev.nearest)} ${num(ev.nearest_score)}${margin}`));
  }
  if (ev.corrected) info.append(el("div", {class: "small corrected"}, ev.original_subject
    ? `corrected (the terminal said ${ev.original_subject})` : "corrected"));
  info.append(el("ul", {class: "reasons"}, ...ev.reasons.map((r) => el("li", {title: r.code}, r.text))));
  if (ev.note) info.append(el("div", {class: "small"}, ev.note));
  if (can("events.biometric")) {
    info.append(el("div", {class: "small"}, ev.live
      ? el("a", {href: `api/events/${ev.event_id}/raw`, target: "_blank"}, "raw bytes") : "raw bytes no longer kept"));
  }
  if (kind === "unknown" && ev.enrollable && can("subjects.enrol")) {
    const b = el("button", {type: "button", class: "enrol-event"}, "Enrol this person…");
    b.onclick = () => openEnrol(ev);
    info.append(b);
  }
  if (kind === "recognised" && can("corrections.make")) {
    const b = el("button", {type: "button", class: "not-this-person"}, "Not this person…");
    b.onclick = () => openCorrect(ev);
    info.append(b);
  }
  return el("div", {class: "event", "data-event": ev.event_id, "data-decision": ev.decision, "data-kind": kind},
    thumb, info);
}

// ---- attendance -------------------------------------------------------------------------------------

function rangeQuery() {
  const f = new FormData($("range"));
  const q = new URLSearchParams({from: f.get("from"), to: f.get("to")});
  if (f.get("group")) q.set("group", f.get("group"));
  return q.toString();
}

async function showDays() {
  const q = rangeQuery();
  $("csv-days").href = `api/attendance/days.csv?${q}`;
  $("xlsx-days").href = `api/attendance/days.xlsx?${q}`;
  const report = await api(`api/attendance/days?${q}`);
  $("tz").textContent = `times in ${report.time_zone}`;
  $("report").querySelector("tbody").replaceChildren(...report.days.map((d) => {
    const more = el("button", {type: "button"}, "punches");
    more.onclick = () => showPunches(d);
    return el("tr", {class: d.missing_punch ? "missing" : "", "data-subject": d.subject, "data-date": d.date},
      el("td", {}, d.date), el("td", {}, d.name ? `${d.name} (${d.subject})` : d.subject), el("td", {}, d.group || ""),
      el("td", {}, d.first_in || "-"), el("td", {}, d.last_out || "-"), el("td", {}, d.worked),
      el("td", {}, d.doors.join(", ")), el("td", {}, String(d.punches.filter((p) => p.counted !== "repeat").length)),
      el("td", {class: d.missing_punch ? "flag" : ""}, d.missing_punch ? `⚠ ${d.missing.join("; ")}` : "no"),
      el("td", {}, more));
  }));
}

function showPunches(d) {
  const rows = d.punches.map((p) => {
    const cells = [el("td", {}, p.time), el("td", {}, p.door), el("td", {}, p.counted), el("td", {}, p.note || "")];
    if (can("attendance.adjust")) {
      const b = el("button", {type: "button"}, "void…");
      b.onclick = async () => {
        const reason = prompt("Why does this punch not count?");
        if (!reason) return;
        const path = p.door === "manual" ? `api/attendance/punches/${p.ref}/void` : "api/attendance/void";
        await api(path, {method: "POST", body: {event_id: p.ref, reason}}).catch((e) => alert(e.message));
        showDays();
      };
      cells.push(el("td", {}, b));
    }
    return el("tr", {}, ...cells);
  });
  $("day-detail").replaceChildren(el("h3", {}, `${d.name || d.subject} on ${d.date}`),
    el("table", {}, el("tr", {}, el("th", {}, "time"), el("th", {}, "door"), el("th", {}, "counted as"), el("th", {}, "note")), ...rows));
}

// ---- people -----------------------------------------------------------------------------------------

async function showPeople() {
  const [listing, receipts] = await Promise.all([api("api/subjects"), api("api/purges")]);
  people = listing.subjects;
  $("gallery").textContent = `central gallery version ${listing.gallery_version ?? "none"} · site profile ${listing.profile}` +
    (listing.consent_text ? ` · consent text ${listing.consent_text.version}` : "") +
    (listing.threshold_meaning ? ` · central matching: ${listing.threshold_meaning}` : "");
  $("subjects").querySelector("tbody").replaceChildren(...people.map((s) => {
    const actions = el("td", {});
    if (s.status === "active" && can("subjects.remove")) {
      const off = el("button", {type: "button"}, "deactivate");
      off.onclick = () => remove(s, "deactivate");
      actions.append(off, " ");
    }
    if (s.status !== "erased" && can("subjects.remove")) {
      const erase = el("button", {type: "button"}, "erase");
      erase.onclick = () => remove(s, "erase");
      actions.append(erase);
    }
    return el("tr", {"data-subject": s.id}, el("td", {}, s.id), el("td", {}, s.display_name || ""), el("td", {}, s.group || ""),
      el("td", {}, s.status), el("td", {}, s.consent ? "yes" : "no"), el("td", {}, s.end_date || ""),
      el("td", {}, s.last_seen ? localTime(s.last_seen) : "-"), actions);
  }));
  $("purges").querySelector("tbody").replaceChildren(...receipts.map((r) => el("tr", {"data-purge": r.purge_id},
    el("td", {}, localTime(r.requested_at)), el("td", {}, r.subject), el("td", {}, r.reason), el("td", {}, r.requested_by),
    el("td", {}, `${r.attendance.records} ${r.attendance.policy}`),
    el("td", {}, r.terminals.map((t) => `${t.terminal}: ${t.confirmed_at ? "confirmed " + localTime(t.confirmed_at) : "pending"}`).join(", ") || "none registered"))));
  if (can("corrections.make")) {
    const confusions = await api("api/confusions");
    $("confusions").replaceChildren(...(confusions.length ? confusions.map((c) => el("li", {}, c.text)) : [el("li", {}, "none")]));
  }
  const select = $("correct").elements.subject;
  select.replaceChildren(el("option", {value: ""}, "someone unknown"),
    ...people.filter((p) => p.status === "active").map((p) => el("option", {value: p.id}, nameOf(p.id))));
}

async function remove(s, how) {
  const text = how === "erase"
    ? `Erase ${s.id}: templates purged on every terminal, the name erased, attendance records kept or anonymised by the site's policy?`
    : `Deactivate ${s.id}: templates purged on every terminal, the person and their attendance records kept?`;
  if (!confirm(text)) return;
  const receipt = await api(how === "erase" ? `api/subjects/${encodeURIComponent(s.id)}` : `api/subjects/${encodeURIComponent(s.id)}/deactivate`,
    {method: how === "erase" ? "DELETE" : "POST", body: how === "erase" ? undefined : {}}).catch((e) => alert(e.message));
  if (receipt) showPeople();
}

function openEnrol(ev) {
  const form = $("enrol");
  form.reset();
  form.elements.event.value = ev ? ev.event_id : "";
  $("enrol-title").textContent = ev ? `Enrol the unknown person of ${ev.time_local}` : "Enrol a person at a terminal";
  $("enrol-terminal").hidden = !!ev;
  form.elements.terminal.required = !ev;
  $("override-fields").hidden = true;
  $("enrol-result").textContent = "";
  const needConsent = site.profile !== "none";
  $("consent-fields").hidden = !needConsent;
  $("consent-version").textContent = consentText && consentText.version ? `text version ${consentText.version}` : "no consent text configured";
  form.elements.person_name.required = needConsent;
  form.elements.consent_given.required = needConsent;
  $("enrol-dialog").showModal();
}

$("enrol").onsubmit = async (e) => {
  if (e.submitter && e.submitter.value === "cancel") return;
  e.preventDefault();
  const f = e.target.elements;
  const body = {display_name: f.display_name.value || null, group: f.group.value || null, end_date: f.end_date.value || null};
  if (site.profile !== "none") body.consent = {person_name: f.person_name.value, method: f.method.value};
  if (f.override.checked) body.override = {others: JSON.parse(f.override.dataset.others || "[]"), reason: f.override_reason.value};
  const out = $("enrol-result");
  let path;
  if (f.event.value) {
    path = `api/events/${encodeURIComponent(f.event.value)}/enrol`;
    body.subject = f.subject.value;
  } else {
    path = `api/subjects/${encodeURIComponent(f.subject.value)}/enroll`;
    body.terminal = f.terminal.value;
    out.textContent = "ask the person to look at the camera…";
  }
  try {
    const done = await api(path, {method: "POST", body});
    out.textContent = `enrolled: gallery version ${done.gallery_version}`;
    setTimeout(() => $("enrol-dialog").close(), 800);
    refresh();
  } catch (err) {
    out.textContent = `refused: ${err.message}`;
    if (err.body && err.body.clashes) {
      const others = [...new Set(err.body.clashes.map((c) => c.other))];
      $("override-fields").hidden = false;
      $("override-text").textContent = `This face scores as ${others.map(nameOf).join(", ")}: the same person may be enrolled already.`;
      f.override.dataset.others = JSON.stringify(others);
      applyRole($("override-fields"));
    }
  }
};

function openCorrect(ev) {
  const form = $("correct");
  form.reset();
  form.elements.event.value = ev.event_id;
  $("correct-text").textContent = `${ev.time_local} at ${ev.terminal}: recorded as ${nameOf(ev.subject)} (${scoreLine(ev)}).`;
  $("correct-result").textContent = "";
  $("correct-dialog").showModal();
}

$("correct").onsubmit = async (e) => {
  if (e.submitter && e.submitter.value === "cancel") return;
  e.preventDefault();
  const f = e.target.elements;
  try {
    const done = await api(`api/events/${encodeURIComponent(f.event.value)}/correct`,
      {method: "POST", body: {subject: f.subject.value || null, reason: f.reason.value}});
    $("correct-result").textContent = "corrected" + (done.confusions.length ? `: ${done.confusions[0].text}` : "");
    setTimeout(() => $("correct-dialog").close(), 800);
    refresh();
  } catch (err) {
    $("correct-result").textContent = `refused: ${err.message}`;
  }
};

// ---- admin ------------------------------------------------------------------------------------------

async function showAdmin() {
  const [staff, tokens, audit] = await Promise.all([api("api/staff"), api("api/tokens"), api("api/audit?limit=30")]);
  $("staff").querySelector("tbody").replaceChildren(...staff.map((s) => {
    const role = el("select", {}, ...["viewer", "hr", "admin"].map((r) => {
      const o = el("option", {value: r}, r);
      if (r === s.role) o.selected = true;
      return o;
    }));
    role.onchange = () => api(`api/staff/${encodeURIComponent(s.username)}`, {method: "PATCH", body: {role: role.value}})
      .then(showAdmin).catch((e) => { alert(e.message); showAdmin(); });
    return el("tr", {}, el("td", {}, s.username), el("td", {}, role), el("td", {}, s.disabled ? "disabled" : "active"), el("td", {}));
  }));
  $("tokens").querySelector("tbody").replaceChildren(...tokens.map((t) => {
    const cell = el("td", {});
    if (!t.revoked_at) {
      const b = el("button", {type: "button"}, "revoke");
      b.onclick = () => api(`api/tokens/${encodeURIComponent(t.name)}`, {method: "DELETE"}).then(showAdmin);
      cell.append(b);
    }
    return el("tr", {}, el("td", {}, t.name), el("td", {}, t.role), el("td", {}, t.revoked_at ? "revoked" : "active"),
      el("td", {}, t.last_used_at ? localTime(t.last_used_at) : "-"), cell);
  }));
  $("audit").querySelector("tbody").replaceChildren(...audit.map((a) => el("tr", {},
    el("td", {}, String(a.seq)), el("td", {class: "nowrap"}, localTime(a.at)), el("td", {}, a.actor), el("td", {}, a.action),
    el("td", {}, a.target), el("td", {class: "small"}, JSON.stringify(a.details)))));
}

$("staff-add").onsubmit = async (e) => {
  e.preventDefault();
  const f = e.target.elements;
  try {
    await api("api/staff", {method: "POST", body: {username: f.username.value, password: f.password.value, role: f.role.value}});
    $("staff-result").textContent = `added ${f.username.value}`;
    e.target.reset();
    showAdmin();
  } catch (err) { $("staff-result").textContent = err.message; }
};

$("token-add").onsubmit = async (e) => {
  e.preventDefault();
  const f = e.target.elements;
  try {
    const made = await api("api/tokens", {method: "POST", body: {name: f.name.value, role: f.role.value}});
    $("token-result").textContent = `${made.token} (shown once: copy it now)`;
    showAdmin();
  } catch (err) { $("token-result").textContent = err.message; }
};

$("audit-verify").onclick = async () => {
  const v = await api("api/audit/verify");
  $("audit-result").textContent = v.ok ? `✔ the chain holds: ${v.entries} entries, head ${v.head.seq}:${v.head.hash.slice(0, 16)}…`
    : `✘ broken at entry ${v.first_bad}: ${v.problem}`;
  $("audit-result").className = v.ok ? "" : "warning";
  showAdmin();
};

// ---- the rest, and the loop -------------------------------------------------------------------------

$("punch").onsubmit = async (e) => {
  e.preventDefault();
  const f = e.target.elements;
  try {
    await api("api/attendance/punches", {method: "POST",
      body: {subject: f.subject.value, time: f.time.value, direction: f.direction.value, reason: f.reason.value}});
    $("punch-result").textContent = "added";
    e.target.reset();
    showDays();
  } catch (err) { $("punch-result").textContent = err.message; }
};

function applyRole(root = document) {
  for (const e of root.querySelectorAll("[data-need]")) e.hidden = !can(e.dataset.need);
}

async function refresh() {
  await showPeople();  // first: the cards and the log name people
  const day = $("day").value;
  $("csv").href = "api/attendance.csv" + (day ? `?date=${day}` : "");
  const [events, log, terminals, health] = await Promise.all([
    api("api/events?limit=24"), api("api/events?limit=200" + (day ? `&date=${day}` : "")),
    api("api/terminals"), api("api/health"),
  ]);
  $("notice").textContent = health.notice || "";
  const quarantine = Object.entries(health.stored_quarantine).map(([k, v]) => `${k} ${v}`).join(", ") || "none";
  $("health").textContent = `broker ${health.connected ? "connected" : "DISCONNECTED"} · ${health.recorded} recorded · ` +
    `${health.events_per_s} events/s · lag ${health.lag_s ?? "-"} s · quarantined: ${quarantine}`;
  if (events.length) $("events").replaceChildren(...events.map(card));
  $("attendance").querySelector("tbody").replaceChildren(...log.map((ev) => el("tr", {},
    el("td", {}, ev.time_local), el("td", {}, ev.terminal), el("td", {}, ev.subject ? nameOf(ev.subject) : "unknown"),
    el("td", {}, ev.decision), el("td", {}, typeof ev.score === "number" ? `${num(ev.score)} / ${num(ev.threshold)}` : ""),
    el("td", {}, ev.reasons.map((r) => r.code).join(" ")), el("td", {class: "small"}, ev.event_id))));
  $("terminal-list").querySelector("tbody").replaceChildren(...terminals.map((t) => el("tr", {},
    el("td", {}, t.id), el("td", {class: ["online", "offline"].includes(t.state) ? t.state : "unknown"}, String(t.state)),
    el("td", {}, `${t.gallery_version ?? "none"}${t.gallery_authority ? " (" + t.gallery_authority + ")" : ""}${t.gallery_current ? "" : " · catching up"}`),
    el("td", {class: "small"}, t.health
      ? `${num(t.health.fps, 1)} fps · outbox ${t.health.outbox?.depth ?? "-"} · as of ${localTime(t.health_at)}` : "-",
      // Liveness off or passive lets a photo of an enrolled person through: said where the operator looks.
      typeof t.health?.liveness_warning === "string"
        ? el("div", {class: "liveness-warning"}, `⚠ ${t.health.liveness_warning}`) : ""))));
  document.body.setAttribute("data-ready", "1");
}

async function start() {
  me = await api("api/me");
  site = me.site;
  document.title = `${site.name} · faceonly`;
  $("site").textContent = site.name;
  $("who").textContent = `${me.username} (${me.role})`;
  $("lab").hidden = me.auth !== "open";
  $("logout").hidden = me.auth === "open";
  applyRole();
  consentText = await api("api/consent-text");
  const today = new Date().toLocaleDateString("sv-SE", {timeZone: site.time_zone});
  $("range").elements.from.value = today;
  $("range").elements.to.value = today;
  const groups = await api("api/attendance/groups");
  $("range").elements.group.append(...groups.map((g) => el("option", {value: g}, g)));
  $("range").onsubmit = (e) => { e.preventDefault(); showDays(); };
  $("day").onchange = refresh;
  $("enrol-open").onclick = () => openEnrol(null);
  $("logout").onclick = async () => { await api("api/logout", {method: "POST", body: {}}); location.href = "login"; };
  await Promise.all([refresh(), showDays(), can("staff.manage") ? showAdmin() : null]);
  setInterval(() => refresh().catch(() => {}), 3000);
}

start();
