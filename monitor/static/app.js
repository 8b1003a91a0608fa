// The Fireworks dashboard: the fleet as the monitor sees it, kept live by the monitor's
// event stream (/api/stream). Plain JavaScript and SVG, no libraries, nothing fetched
// from anywhere but the monitor that serves this page.
//
// Pushed, not polled: the stream's `fleet` event replaces the whole state; every later
// event is applied at once and the worker it names is then re-read (GET
// /api/workers/{id}) for exact numbers. Asked periodically: /healthz every
// HEALTH_EVERY_MS, and the fleet's new activity samples (one read for all workers) every
// ACTIVITY_EVERY_MS. Drawing is once per frame, whatever the events: a fleet of hundreds
// sends hundreds of events per command.

const WINDOW_MS = 15 * 60 * 1000; // how much history the charts show
const HEALTH_EVERY_MS = 10_000;
const GAP_MS = 20_000; // samples further apart than this break the rate line
const REFETCH_DELAY_MS = 150; // events for one worker come in bursts: read it once
const FOLLOW_UP_MS = [2_500, 6_000]; // after a (re)connect: see onStreamEvent
const ACTIVITY_EVERY_MS = 5_000; // the history's sample interval: see readActivity
const SAMPLES_PAGE = 10_000; // the API's largest limit: see fetchSamples
const SAMPLES_LAG_MS = 5_000; // see readSamples
const SAMPLES_TIMEOUT_MS = 30_000; // a read that hangs would hold up every later one
const FLEET = "all";
const EVENT_KINDS = [
  "registered",
  "command_sent",
  "acknowledged",
  "activated",
  "deactivated",
  "lost",
  "offline",
  "reconnected",
  "forgotten",
  "expired",
  "unroutable",
];
const PALETTE = [
  "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#e67e00",
  "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#a8a800",
];

// -- the one way to the monitor -----------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/**
 * The API token (FIREWORKS_API_TOKEN on the monitor), asked for when the monitor
 * answers 401 and kept for this tab only (sessionStorage).
 */
const auth = {
  KEY: "fireworks-api-token",
  asking: null,
  get token() {
    return sessionStorage.getItem(this.KEY);
  },
  /** Ask once, however many requests are waiting; resolves when a token was given. */
  ask() {
    if (this.asking) return this.asking;
    const dialog = $("#token-dialog");
    const form = $("#token-form");
    const input = $("#token-input");
    const asking = new Promise((resolve) => {
      const done = () => {
        if (this.asking === asking) this.asking = null;
        renderBanner();
        resolve();
      };
      form.onsubmit = (event) => {
        event.preventDefault();
        if (!input.value) return;
        sessionStorage.setItem(this.KEY, input.value);
        input.value = "";
        dialog.close();
        done();
        stream.restart(); // the stream was refused without it
      };
      // Dismissed (Escape) without a token: what waited on it tries again, and the
      // monitor's next 401 asks again, rather than leaving the page waiting for good.
      dialog.onclose = done;
      $("#token-wrong").hidden = !this.token;
      dialog.showModal();
      input.focus();
    });
    this.asking = asking;
    renderBanner(); // the dialog says what is wrong: not a lost connection
    return asking;
  },
};

/**
 * Every request and the live stream go through here: headers() carries the API token,
 * and a 401 answer asks for it and tries again. EventSource sends no headers of its
 * own: the stream's URL carries the token instead (access_token).
 */
const api = {
  url(path) {
    return new URL(path, document.baseURI).href; // relative: works behind a path prefix
  },
  headers() {
    const headers = { Accept: "application/json" };
    if (auth.token) headers.Authorization = `Bearer ${auth.token}`;
    return headers;
  },
  async request(path, { method = "GET", timeoutMs = null } = {}) {
    for (;;) {
      let response;
      try {
        response = await fetch(this.url(path), {
          method,
          headers: this.headers(),
          cache: "no-store",
          signal: timeoutMs === null ? null : AbortSignal.timeout(timeoutMs),
        });
      } catch {
        throw new ApiError(0, "the monitor cannot be reached");
      }
      clock.fromResponse(response);
      if (response.status !== 401) return response;
      await auth.ask();
    }
  },
  streamUrl(path) {
    const url = new URL(this.url(path));
    if (auth.token) url.searchParams.set("access_token", auth.token);
    return url.href;
  },
  /** The JSON body; statuses in `accept` count as answers too (e.g. /healthz's 503). */
  async json(path, { method = "GET", accept = [], timeoutMs = null } = {}) {
    const response = await this.request(path, { method, timeoutMs });
    if (!response.ok && !accept.includes(response.status)) {
      let detail = response.statusText;
      try {
        detail = (await response.json()).detail ?? detail;
      } catch {
        // not JSON: the status text says enough
      }
      throw new ApiError(response.status, `the monitor answered ${response.status}: ${detail}`);
    }
    return response.json();
  },
  stream(path, handlers) {
    return new LiveStream(() => this.streamUrl(path), handlers);
  },
};

/** An EventSource that keeps trying: the browser retries a broken connection itself;
 *  when it gives up (an answer that is not a stream), this starts it again. */
class LiveStream {
  constructor(url, { onEvent, onDown }) {
    this.url = url; // a function: the token may change
    this.onEvent = onEvent;
    this.onDown = onDown;
    this.failures = 0;
    this.timer = null;
    this.source = null;
    this.connect();
  }

  connect() {
    clearTimeout(this.timer);
    const source = new EventSource(this.url());
    this.source = source;
    source.addEventListener("open", () => {
      this.failures = 0;
    });
    source.addEventListener("error", () => {
      if (source !== this.source) return;
      this.onDown();
      if (source.readyState === EventSource.CLOSED) this.retry();
    });
    for (const kind of ["fleet", "dropped", ...EVENT_KINDS]) {
      source.addEventListener(kind, (message) => {
        if (source === this.source) this.onEvent(kind, message.data);
      });
    }
  }

  retry() {
    this.source.close();
    // EventSource hides why it was refused: a plain request finds out, and a 401
    // there asks for the token (which restarts this stream).
    api.request("api/workers").catch(() => {});
    const delay = Math.min(30_000, 1000 * 2 ** this.failures++) * (0.5 + Math.random() / 2);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /** The monitor dropped us (we fell behind): start over with a fresh `fleet`. */
  restart() {
    this.source.close();
    this.connect();
  }
}

/** The monitor's clock, seen from here: times it reports are shown relative to it. */
const clock = {
  fromEvents: null, // local minus monitor time (ms), the least seen: delivery only adds
  fromHeader: null, // the same from an HTTP Date header (one second resolution)
  event(at) {
    const offset = Date.now() - Date.parse(at);
    if (Number.isFinite(offset) && (this.fromEvents === null || offset < this.fromEvents)) {
      this.fromEvents = offset;
    }
  },
  fromResponse(response) {
    const date = Date.parse(response.headers.get("date") ?? "");
    if (Number.isFinite(date)) this.fromHeader = Date.now() - (date + 500);
  },
  reset() {
    this.fromEvents = null; // another monitor (a restart) may keep another time
  },
  now() {
    return Date.now() - (this.fromEvents ?? this.fromHeader ?? 0);
  },
};

// -- state ------------------------------------------------------------------------------

const state = {
  live: false, // the stream is connected and the state came from it
  everLive: false,
  failed: false, // the stream has failed at least once
  fleetDesired: null,
  workers: new Map(), // worker_id -> WorkerView
  fetchedAt: new Map(), // worker_id -> local time its view was last read
  applied: new Map(), // worker_id -> sequence number of the newest view applied
  samples: new Map(), // worker_id -> [{t, active, activity}] (monitor time, ms)
  latencies: [], // [{t, ms, worker}]
  events: [], // the newest fleet events, newest last
  health: null,
  historyOff: false,
};
let sequence = 0; // orders views: a slow answer never overwrites a newer one
let streamed = 0; // events taken from the stream so far
const streamedAs = new WeakMap(); // event -> its number in the stream

function applyView(view, seq) {
  const id = view.worker_id;
  if ((state.applied.get(id) ?? -1) > seq) return;
  if (!state.workers.has(id)) fleetChanged();
  state.applied.set(id, seq);
  state.workers.set(id, view);
  state.fetchedAt.set(id, Date.now());
}

function replaceFleet(fleet) {
  const seq = ++sequence;
  state.fleetDesired = fleet.fleet_desired_active;
  const ids = new Set(fleet.workers.map((w) => w.worker_id));
  for (const id of [...state.workers.keys()]) {
    if (!ids.has(id)) forget(id);
  }
  for (const view of fleet.workers) applyView(view, seq);
}

function forget(id) {
  fleetChanged();
  state.workers.delete(id);
  state.fetchedAt.delete(id);
  state.applied.delete(id);
  state.samples.delete(id);
  rows.get(id)?.tr.remove();
  rows.delete(id);
}

/** What an event says, applied at once (the worker is re-read right after). */
function applyEvent(event) {
  const id = event.worker_id;
  if (id === FLEET) {
    if (event.kind === "command_sent" && typeof event.detail.active === "boolean") {
      state.fleetDesired = event.detail.active;
    }
    return;
  }
  const view = state.workers.get(id);
  if (event.kind === "forgotten") {
    forget(id);
    return;
  }
  if (!view) return; // a new worker: the re-read brings it
  const change = {};
  switch (event.kind) {
    case "lost":
    case "offline":
      change.liveness = event.kind;
      break;
    case "reconnected":
    case "registered":
      change.liveness = "online";
      break;
    case "activated":
    case "deactivated":
      if (view.observed) change.observed = { ...view.observed, active: event.kind === "activated" };
      break;
    case "command_sent":
      change.pending_command = event.command_id;
      if (typeof event.detail.active === "boolean") change.desired_active = event.detail.active;
      break;
    case "acknowledged":
    case "expired":
    case "unroutable":
      if (view.pending_command === event.command_id) change.pending_command = null;
      if (event.latency_ms !== null) change.last_command_latency_ms = event.latency_ms;
      break;
    default:
      break;
  }
  state.workers.set(id, { ...view, ...change });
}

function remember(event) {
  state.events.push(event);
  if (state.events.length > 200) state.events.splice(0, state.events.length - 200);
  if (event.kind === "acknowledged" && event.latency_ms !== null) {
    state.latencies.push({ t: Date.parse(event.at), ms: event.latency_ms, worker: event.worker_id });
  }
}

// -- reading from the monitor --------------------------------------------------------------

const pendingReads = new Set();
let readTimer = null;
const settleTimers = new Map(); // worker_id (or FLEET) -> the one follow-up read

/**
 * Re-read these workers soon (a burst of events becomes one read), and once more a
 * status interval later: the stream carries no status reports, so the activity and
 * the rate a change brings are read when the worker has reported after it. That second
 * read is one per burst, never repeated (readActivity keeps active workers current).
 */
function reread(id, { settle = true } = {}) {
  pendingReads.add(id);
  if (readTimer === null) readTimer = setTimeout(flushReads, REFETCH_DELAY_MS);
  if (settle) {
    clearTimeout(settleTimers.get(id));
    const interval = id === FLEET ? longestInterval() : state.workers.get(id)?.status_interval ?? 2;
    settleTimers.set(
      id,
      setTimeout(() => {
        settleTimers.delete(id);
        if (state.live) reread(id, { settle: false });
      }, interval * 1500 + 500),
    );
  }
}

/**
 * Activity, its rate and the charts change with every status report, and the stream
 * carries changes, not reports: the fleet's new samples are read at the pace the history
 * takes them and, while a worker is active, the fleet's views with them.
 */
function readActivity() {
  if (!state.live) return;
  readSamples();
  const working = [...state.workers.values()].some(
    (view) => view.liveness === "online" && view.observed?.active,
  );
  if (working) reread(FLEET, { settle: false });
}

function longestInterval() {
  return Math.max(2, ...[...state.workers.values()].map((w) => w.status_interval));
}

async function flushReads() {
  readTimer = null;
  const ids = [...pendingReads];
  pendingReads.clear();
  const seq = ++sequence;
  try {
    if (ids.includes(FLEET) || ids.length > 8) {
      const views = await api.json("api/workers");
      const seen = new Set(views.map((v) => v.worker_id));
      for (const view of views) applyView(view, seq);
      for (const id of [...state.workers.keys()]) {
        if (!seen.has(id) && (state.applied.get(id) ?? -1) < seq) forget(id);
      }
      render();
    } else {
      await Promise.all(ids.map((id) => readWorker(id, seq)));
      for (const id of ids) render(id);
    }
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 0)) console.warn(error);
  }
}

async function readWorker(id, seq) {
  try {
    applyView(await api.json(`api/workers/${encodeURIComponent(id)}`), seq);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      if ((state.applied.get(id) ?? -1) < seq) forget(id);
    } else {
      throw error;
    }
  }
}

async function readHealth() {
  let health = null;
  try {
    health = await api.json("healthz", { accept: [503] });
  } catch {
    // No answer at all: the health stays unknown.
  }
  // An answer that comes back after the stream went down speaks for a monitor that is
  // gone (a stopping one answers 503 between leaving the broker and closing its API).
  state.health = state.live ? health : null;
  renderSummary();
}

let newestSample = null; // monitor time (ms) of the newest sample held
let samplesReading = null; // the read under way: one at a time

/**
 * The fleet's activity samples: all of the window when `full` (a new stream), else those
 * since the newest held. The history writes once a second, in the order it heard, so a
 * sample lands on disk after newer ones only if the clock went back: the reads overlap by
 * SAMPLES_LAG_MS, and what is held already is not taken twice.
 */
async function readSamples({ full = false } = {}) {
  if (!full && (samplesReading || state.historyOff)) return; // the next tick reads on
  while (samplesReading) await samplesReading;
  samplesReading = readSamplesNow(full).finally(() => {
    samplesReading = null;
  });
  await samplesReading;
}

async function readSamplesNow(full) {
  const fromNewest = !full && newestSample !== null;
  const since = fromNewest ? newestSample - SAMPLES_LAG_MS : clock.now() - WINDOW_MS;
  let found;
  try {
    found = await fetchSamples(since);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404 && /history is off/.test(error.message)) {
      state.historyOff = true;
      dropSamples(); // an earlier monitor's, or this one's before it was restarted
      scheduleCharts();
    }
    return;
  }
  if (!fromNewest) dropSamples();
  const added = new Set();
  for (const s of found) {
    // Kept for workers not in view yet too: their view may come after their samples.
    if (!state.samples.has(s.worker_id)) state.samples.set(s.worker_id, []);
    const held = state.samples.get(s.worker_id);
    const t = Date.parse(s.at);
    if (held.length && held[held.length - 1].t >= t) continue; // the reads overlap, pages share a seam
    held.push({ t, active: s.active, activity: s.activity });
    added.add(s.worker_id);
    newestSample = Math.max(newestSample ?? -Infinity, t);
  }
  const oldest = clock.now() - WINDOW_MS - GAP_MS;
  for (const id of added) state.samples.set(id, state.samples.get(id).filter((s) => s.t >= oldest));
  scheduleCharts();
}

function dropSamples() {
  state.samples.clear();
  newestSample = null;
}

/** Samples since `since`, oldest first: the API answers the newest SAMPLES_PAGE of a
 *  range, so a full page is followed by the one before it. */
async function fetchSamples(since) {
  const pages = [];
  let until = null;
  for (;;) {
    let path = `api/samples?since=${encodeURIComponent(new Date(since).toISOString())}&limit=${SAMPLES_PAGE}`;
    if (until !== null) path += `&until=${encodeURIComponent(until)}`;
    const page = await api.json(path, { timeoutMs: SAMPLES_TIMEOUT_MS });
    pages.unshift(page);
    if (page.length < SAMPLES_PAGE || page[0].at === until) return pages.flat();
    until = page[0].at; // in both pages: readSamplesNow keeps it once
  }
}

function eventKey(event) {
  return `${Date.parse(event.at)} ${event.kind} ${event.worker_id} ${event.command_id}`;
}

/** The fleet's recent events: the latency chart and the event list. */
async function loadEvents() {
  const since = new Date(clock.now() - WINDOW_MS).toISOString();
  const mark = streamed; // what the stream brings meanwhile is kept
  try {
    const events = await api.json(`api/events?since=${encodeURIComponent(since)}&limit=10000`);
    const meanwhile = state.events.filter((e) => streamedAs.get(e) > mark);
    const stored = new Set(events.map(eventKey));
    state.events = [];
    state.latencies = [];
    for (const event of [...events, ...meanwhile.filter((e) => !stored.has(eventKey(e)))]) {
      remember(event);
    }
    state.historyOff = false;
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) state.historyOff = true;
  }
  renderEvents();
  scheduleCharts();
}

// -- the stream -------------------------------------------------------------------------

function onStreamEvent(kind, data) {
  if (kind === "dropped") {
    stream.restart();
    return;
  }
  const payload = JSON.parse(data);
  if (kind === "fleet") {
    clock.reset();
    replaceFleet(payload);
    state.live = true;
    state.everLive = true;
    readHealth();
    loadEvents();
    readSamples({ full: true });
    // A monitor that just started learns of running workers from their status reports,
    // and the stream has no event for that: read the fleet again once it has heard them.
    for (const delay of FOLLOW_UP_MS) {
      setTimeout(() => {
        if (state.live) reread(FLEET, { settle: false });
      }, delay);
    }
    render();
    return;
  }
  streamedAs.set(payload, ++streamed);
  clock.event(payload.at);
  applyEvent(payload);
  remember(payload);
  if (payload.worker_id) reread(payload.worker_id);
  render(payload.worker_id ?? FLEET);
  if (kind === "acknowledged") scheduleCharts();
}

function onStreamDown() {
  if (state.live || !state.failed) {
    state.live = false;
    state.failed = true;
    state.health = null;
    render();
  }
}

// -- rendering --------------------------------------------------------------------------

const $ = (selector) => document.querySelector(selector);
const rows = new Map(); // worker_id -> {tr, cells, button, spark}
const COLUMNS = [
  ["liveness", "Liveness"],
  ["desired", "Desired"],
  ["observed", "Observed"],
  ["activity", "Activity"],
  ["rate", "Rate"],
  ["trend", "Rate, last 15 min"],
  ["seen", "Last seen"],
  ["latency", "Last command latency"],
  ["control", "Control"],
];

function el(name, attributes = {}, text = null) {
  const node = document.createElement(name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text !== null) node.textContent = text;
  return node;
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function setData(node, key, value) {
  if (node.dataset[key] !== value) node.dataset[key] = value;
}

const collator = new Intl.Collator(undefined, { numeric: true }); // w2 before w10

function byId(a, b) {
  return collator.compare(a, b);
}

let colors = null; // worker_id -> its colour; null when the fleet changed

/** A worker came or went: the colours move, and every row and chart is drawn again. */
function fleetChanged() {
  colors = null;
  drawAll = true;
  scheduleCharts();
}

/** The fleet's ids in order, each with a colour: the palette's, then hues apart. */
function colorOf(id) {
  if (colors === null) {
    const ids = [...state.workers.keys()].sort(byId);
    colors = new Map(
      ids.map((worker, i) => [worker, PALETTE[i] ?? `hsl(${((i * 137.508) % 360).toFixed(1)} 65% 40%)`]),
    );
  }
  return colors.get(id) ?? PALETTE[0];
}

function rowFor(id) {
  let row = rows.get(id);
  if (row) return row;
  const tr = el("tr", { role: "row", "data-worker": id });
  const name = el("th", { role: "rowheader", scope: "row", "data-field": "worker" });
  const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
  name.append(swatch, el("span", { class: "worker-id" }, id));
  tr.append(name);
  const cells = {};
  for (const [field, label] of COLUMNS) {
    const td = el("td", { role: "cell", "data-field": field, "data-label": label });
    tr.append(td);
    cells[field] = td;
  }
  cells.liveness.append(el("span", { class: "badge" }));
  cells.desired.append(el("span", { class: "value" }), el("span", { class: "pending" }, "pending"));
  cells.activity.append(el("span", { class: "value" }), el("span", { class: "stale" }));
  const spark = document.createElementNS(SVG_NS, "svg");
  spark.setAttribute("class", "spark");
  spark.setAttribute("role", "img");
  cells.trend.append(spark);
  const button = el("button", { type: "button", class: "steer" });
  button.addEventListener("click", () => {
    steer(id, button.dataset.action === "activate", button);
  });
  cells.control.append(button);
  row = { tr, cells, button, spark, swatch };
  rows.set(id, row);
  scheduleCharts();
  // Rows never move once placed (a moved row would lose the keyboard focus): a new one
  // goes in before the first row that sorts after it.
  let after = null; // the first row that sorts after this one
  for (const other of rows.keys()) {
    if (byId(other, id) > 0 && (after === null || byId(other, after) < 0)) after = other;
  }
  $("#worker-rows").insertBefore(tr, after === null ? null : rows.get(after).tr);
  return row;
}

function activeText(value) {
  return value === true ? "active" : value === false ? "inactive" : "—";
}

function renderRow(view) {
  const row = rowFor(view.worker_id);
  const { cells, button, tr } = row;
  const observed = view.observed ? view.observed.active : null;
  const pending = view.pending_command !== null;
  setData(tr, "liveness", view.liveness);
  setData(tr, "observed", activeText(observed));
  setData(tr, "desired", view.desired_active === null ? "as-is" : activeText(view.desired_active));
  setData(tr, "pending", String(pending));
  row.swatch.style.background = colorOf(view.worker_id);

  const badge = cells.liveness.firstChild;
  setText(badge, view.liveness);
  setData(badge, "liveness", view.liveness);

  const desired = cells.desired.querySelector(".value");
  setText(desired, view.desired_active === null ? "as it is" : activeText(view.desired_active));
  cells.desired.querySelector(".pending").hidden = !pending;
  setText(cells.observed, activeText(observed));
  cells.observed.classList.toggle(
    "differs",
    view.desired_active !== null && observed !== null && observed !== view.desired_active,
  );

  setText(cells.activity.querySelector(".value"), view.observed ? String(view.observed.activity) : "—");
  // A worker that is not reporting has no current rate (the view keeps its last one).
  const rate = view.liveness === "online" ? view.activity_rate : null;
  setText(cells.rate, rate === null ? "—" : `${rate.toFixed(1)}/s`);
  setText(
    cells.latency,
    view.last_command_latency_ms === null ? "—" : `${formatMs(view.last_command_latency_ms)}`,
  );

  const wanted = view.desired_active ?? observed ?? false;
  const action = wanted ? "deactivate" : "activate";
  if (button.dataset.action !== action) {
    button.dataset.action = action;
    button.textContent = wanted ? "Deactivate" : "Activate";
    button.setAttribute("aria-label", `${wanted ? "Deactivate" : "Activate"} worker ${view.worker_id}`);
  }
}

const dirty = new Set(); // workers whose row is to be drawn again
let drawAll = false;
let renderFrame = null;

/** Draw the page again on the next frame: `id`'s row (if it names a worker) or all. */
function render(id = null) {
  if (id === null) drawAll = true;
  else dirty.add(id);
  if (renderFrame === null) renderFrame = requestAnimationFrame(renderNow);
}

function renderNow() {
  renderFrame = null;
  const all = drawAll;
  const ids = all ? [...state.workers.keys()] : [...dirty].filter((id) => state.workers.has(id));
  drawAll = false;
  dirty.clear();
  renderBanner();
  renderSummary();
  for (const id of ids) renderRow(state.workers.get(id));
  $("#no-workers").hidden = state.workers.size > 0 || !state.everLive;
  if (all) renderTimes(); // else the next tick does (every second)
  renderEvents();
}

function renderBanner() {
  $("#banner").hidden = state.live || auth.asking !== null || !(state.everLive || state.failed);
  const status = $("#connection");
  const text = state.live ? "Live" : state.failed ? "Reconnecting…" : "Connecting…";
  setText(status, text);
  setData(status, "state", state.live ? "live" : "down");
  document.body.classList.toggle("offline", !state.live && state.failed);
}

function renderSummary() {
  const workers = [...state.workers.values()];
  const count = (test) => String(workers.filter(test).length);
  const online = (w) => w.liveness === "online";
  setText($("#count-online"), count(online));
  setText($("#count-lost"), count((w) => w.liveness === "lost"));
  setText($("#count-offline"), count((w) => w.liveness === "offline"));
  setText($("#count-active"), count((w) => online(w) && w.observed?.active === true));
  setText($("#count-inactive"), count((w) => online(w) && w.observed?.active === false));
  setText($("#count-pending"), count((w) => w.pending_command !== null));
  setText($("#fleet-desired"), state.fleetDesired === null ? "as they are" : activeText(state.fleetDesired));

  const broker = $("#broker");
  const health = state.health;
  const brokerState = health === null ? "unknown" : health.broker_connected ? "connected" : "disconnected";
  setText(broker, brokerState);
  setData(broker, "state", brokerState);
  const database = $("#database");
  const dbState =
    health === null
      ? "unknown"
      : health.database_writable === null
        ? "off"
        : health.database_writable
          ? "writable"
          : "failing";
  setText(database, dbState);
  setData(database, "state", dbState);
}

/** The times shown relative to now: ticked here every second, no request made. */
function renderTimes() {
  const now = clock.now();
  for (const [id, view] of state.workers) {
    const row = rows.get(id);
    if (!row) continue;
    const age = now - Date.parse(view.last_seen_at);
    let seen = ago(age);
    // While online and the stream is live, the monitor would have told us of a silence
    // longer than three status intervals: the worker was heard within that. Not while
    // the monitor is off the broker: then nobody's silence is judged (README).
    const bound = 3 * view.status_interval * 1000;
    const hearing = state.health?.broker_connected !== false;
    if (state.live && hearing && view.liveness === "online" && age > bound) {
      seen = `< ${Math.ceil(bound / 1000)} s ago`;
    }
    setText(row.cells.seen, seen);
    row.cells.seen.title = new Date(Date.parse(view.last_seen_at) + clockSkew()).toLocaleString();
    // The counter is as of the last time this worker was read (the stream carries no
    // status reports): said so once it is older than a couple of reports.
    const fetched = Date.now() - (state.fetchedAt.get(id) ?? Date.now());
    const stale =
      view.activity_rate > 0 && fetched > Math.max(5000, 2 * view.status_interval * 1000);
    setText(row.cells.activity.querySelector(".stale"), stale ? `as of ${ago(fetched)}` : "");
  }
}

function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

function formatMs(ms) {
  if (ms >= 1000) return `${(ms / 1000).toFixed(ms >= 10_000 ? 0 : 1)} s`;
  return `${ms >= 100 ? ms.toFixed(0) : ms.toFixed(1)} ms`;
}

function tickMs(ms) {
  return ms >= 1000 ? `${+(ms / 1000).toPrecision(3)} s` : `${+ms.toPrecision(3)} ms`;
}

function clockTime(t) {
  return new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function renderEvents() {
  const list = $("#event-list");
  const newest = state.events.slice(-12).reverse();
  list.replaceChildren(
    ...newest.map((event) => {
      const parts = [event.kind.replace("_", " ")];
      if (event.worker_id) parts.push(event.worker_id === FLEET ? "fleet" : event.worker_id);
      if (event.latency_ms !== null) parts.push(formatMs(event.latency_ms));
      if (event.detail.outcome) parts.push(String(event.detail.outcome));
      if (event.kind === "command_sent" && typeof event.detail.active === "boolean") {
        parts.push(event.detail.active ? "activate" : "deactivate");
      }
      const item = el("li", { "data-kind": event.kind });
      item.append(el("time", { datetime: event.at }, clockTime(Date.parse(event.at) + clockSkew())), ` ${parts.join(" · ")}`);
      return item;
    }),
  );
  $("#no-events").hidden = newest.length > 0;
}

/** Monitor time to local time (for showing a clock time). */
function clockSkew() {
  return Date.now() - clock.now();
}

// -- steering ---------------------------------------------------------------------------

const inFlight = new Set();

async function steer(target, active, button) {
  if (inFlight.has(target)) return;
  inFlight.add(target);
  button.setAttribute("aria-busy", "true");
  const action = active ? "activate" : "deactivate";
  const who = target === FLEET ? "the fleet" : target;
  const path =
    target === FLEET ? `api/fleet/${action}` : `api/workers/${encodeURIComponent(target)}/${action}`;
  try {
    const { commands } = await api.json(path, { method: "POST" });
    const { awaiting, held } = commands[0];
    const plural = awaiting.length === 1 ? "" : "s";
    if (held) notice(`${action} for ${who} held: the monitor sends it once back on the broker`);
    else if (awaiting.length) notice(`${action} sent to ${who}; awaiting ${awaiting.length} acknowledgement${plural}`);
    else notice(`${action} sent to ${who}; no worker online to answer it`);
    reread(target);
  } catch (error) {
    notice(`could not ${action} ${who}: ${error.message}`, true);
  } finally {
    inFlight.delete(target);
    button.removeAttribute("aria-busy");
  }
}

function notice(text, problem = false) {
  const node = $("#notice");
  node.textContent = `${clockTime(Date.now())} ${text}`;
  node.classList.toggle("problem", problem);
}

// -- charts -------------------------------------------------------------------------------

const SVG_NS = "http://www.w3.org/2000/svg";
// The charts span minutes: drawn at most this often, however many acknowledgements
// come in meanwhile (a fleet's come in hundreds).
const CHARTS_EVERY_MS = 1000;
let chartsDue = false;
let chartsDrawnAt = -Infinity;

function scheduleCharts() {
  if (chartsDue) return;
  chartsDue = true;
  const wait = Math.max(0, chartsDrawnAt + CHARTS_EVERY_MS - performance.now());
  setTimeout(() => {
    requestAnimationFrame(() => {
      chartsDue = false;
      chartsDrawnAt = performance.now();
      drawCharts();
    });
  }, wait);
}

function svg(name, attributes = {}, text = null) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text !== null) node.textContent = text;
  return node;
}

/** Units of work per second between consecutive samples of the same process, in
 *  segments: a restart (activity going down) or a gap in the samples breaks the line. */
function rates(samples) {
  const segments = [];
  let segment = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1];
    const b = samples[i];
    const dt = b.t - a.t;
    if (dt <= 0) continue;
    if (b.activity < a.activity || dt > GAP_MS) {
      if (segment.length) segments.push(segment);
      segment = [];
      continue;
    }
    segment.push({ t: b.t, v: ((b.activity - a.activity) * 1000) / dt });
  }
  if (segment.length) segments.push(segment);
  return segments;
}

function niceCeil(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

/** A chart's frame: its size (from the page's layout) and the plot area in it. */
function frame(node, height, margin = { left: 44, right: 10, top: 10, bottom: 22 }) {
  const width = Math.max(160, Math.round(node.parentElement.getBoundingClientRect().width) || 600);
  node.setAttribute("viewBox", `0 0 ${width} ${height}`);
  node.setAttribute("width", String(width));
  node.setAttribute("height", String(height));
  node.replaceChildren();
  return {
    width,
    height,
    left: margin.left,
    right: width - margin.right,
    top: margin.top,
    bottom: height - margin.bottom,
  };
}

function timeAxis(node, box, t0, t1) {
  const minutes = [0.25, 0.5, 1, 2, 5, 10, 15, 30, 60];
  const fit = Math.max(2, Math.floor((box.right - box.left) / 80));
  const span = (t1 - t0) / 60_000;
  const step = (minutes.find((m) => span / m <= fit) ?? 60) * 60_000;
  const skew = clockSkew();
  const x = (t) => box.left + ((t - t0) / (t1 - t0)) * (box.right - box.left);
  for (let t = Math.ceil((t0 + skew) / step) * step - skew; t <= t1; t += step) {
    node.append(svg("line", { class: "grid", x1: x(t), x2: x(t), y1: box.top, y2: box.bottom }));
    const format = { hour: "2-digit", minute: "2-digit" };
    if (step < 60_000) format.second = "2-digit";
    const label = new Date(t + skew).toLocaleTimeString([], format);
    // A label that would run off either end is tucked in.
    const half = label.length * 3.3;
    const anchor = x(t) + half > box.width ? "end" : x(t) - half < 0 ? "start" : "middle";
    node.append(svg("text", { x: x(t), y: box.height - 6, "text-anchor": anchor }, label));
  }
  node.append(svg("line", { class: "axis", x1: box.left, x2: box.right, y1: box.bottom, y2: box.bottom }));
  return x;
}

/** A step of 1, 2 or 5 times a power of ten giving about `parts` steps up to `value`. */
function niceStep(value, parts = 4) {
  const raw = Math.max(value, 1e-9) / parts;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((step) => step >= raw);
}

/** A linear y axis from 0 past `top`, labelled at nice steps; the scale and its top. */
function linearAxis(node, box, top, { integers = false } = {}) {
  const step = integers ? Math.max(1, Math.ceil(niceStep(top))) : niceStep(top);
  const max = Math.max(step, Math.ceil(top / step - 1e-9) * step);
  const y = (v) => box.bottom - (v / max) * (box.bottom - box.top);
  const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  for (let v = 0; v <= max + step / 2; v += step) {
    node.append(svg("line", { class: "grid", x1: box.left, x2: box.right, y1: y(v), y2: y(v) }));
    node.append(svg("text", { x: box.left - 6, y: y(v) + 4, "text-anchor": "end" }, v.toFixed(digits)));
  }
  return { y, max };
}

function pathOf(points, x, y) {
  // A lone point is drawn as a dot (a round cap on a tiny line).
  return points
    .map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`)
    .join("") + (points.length === 1 ? "h0.01" : "");
}

/** The charts' time span: the last 15 minutes, or less while there is less to show
 *  (never under two minutes), so that a young fleet's lines are not squeezed. */
function timeDomain() {
  const t1 = clock.now();
  let first = t1;
  for (const samples of state.samples.values()) {
    if (samples.length) first = Math.min(first, samples[0].t);
  }
  for (const l of state.latencies) first = Math.min(first, l.t);
  const span = Math.min(WINDOW_MS, Math.max(2 * 60_000, (t1 - first) * 1.1));
  return [t1 - span, t1];
}

function drawCharts() {
  drawRateChart();
  drawLatencyCharts();
  for (const [id, row] of rows) drawSpark(id, row.spark);
}

function drawRateChart() {
  const node = $("#rate-chart");
  const box = frame(node, 220);
  const [t0, t1] = timeDomain();
  const ids = [...state.workers.keys()].sort(byId);
  const series = ids.map((id) => ({
    id,
    segments: rates(state.samples.get(id) ?? [])
      .map((segment) => segment.filter((p) => p.t >= t0))
      .filter((segment) => segment.length),
  }));
  const top = Math.max(1, ...series.flatMap((s) => s.segments.flat().map((p) => p.v)));
  const x = timeAxis(node, box, t0, t1);
  const { y, max } = linearAxis(node, box, top);
  let points = 0;
  for (const { id, segments } of series) {
    const count = segments.reduce((n, s) => n + s.length, 0);
    points += count;
    if (!count) continue;
    node.append(
      svg("path", {
        class: "series",
        d: segments.map((s) => pathOf(s, x, y)).join(""),
        stroke: colorOf(id),
        "data-worker": id,
        "data-points": String(count),
      }),
    );
  }
  const latest = series
    .map(({ id, segments }) => {
      const last = segments.at(-1)?.at(-1);
      return last ? `${id} ${last.v.toFixed(1)} per second` : null;
    })
    .filter(Boolean);
  node.setAttribute(
    "aria-label",
    points
      ? `Activity rate per worker over the last 15 minutes, up to ${max} per second. Latest: ${latest.join(", ")}.`
      : "Activity rate per worker over the last 15 minutes: no samples yet.",
  );
  if (!points) {
    const text = state.historyOff ? "history is off on this monitor" : "no samples yet";
    node.append(svg("text", { class: "empty", x: box.width / 2, y: box.height / 2, "text-anchor": "middle" }, text));
  }
  $("#rate-legend").replaceChildren(
    ...ids.map((id) => {
      const item = el("li");
      const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
      swatch.style.background = colorOf(id);
      item.append(swatch, id);
      return item;
    }),
  );
}

function drawSpark(id, node) {
  const width = 120;
  const height = 28;
  node.setAttribute("viewBox", `0 0 ${width} ${height}`);
  node.setAttribute("width", String(width));
  node.setAttribute("height", String(height));
  node.replaceChildren();
  const [t0, t1] = timeDomain();
  const segments = rates(state.samples.get(id) ?? [])
    .map((segment) => segment.filter((p) => p.t >= t0))
    .filter((segment) => segment.length);
  const values = segments.flat().map((p) => p.v);
  const max = niceCeil(Math.max(1, ...values));
  const x = (t) => 2 + ((t - t0) / (t1 - t0)) * (width - 4);
  const y = (v) => height - 3 - (v / max) * (height - 6);
  node.append(svg("line", { class: "axis", x1: 0, x2: width, y1: height - 2.5, y2: height - 2.5 }));
  if (values.length) {
    node.append(
      svg("path", {
        class: "series",
        d: segments.map((s) => pathOf(s, x, y)).join(""),
        stroke: colorOf(id),
        "data-points": String(values.length),
      }),
    );
  }
  const last = values.at(-1);
  node.setAttribute(
    "aria-label",
    values.length
      ? `${id}: activity rate over the last 15 minutes, latest ${last.toFixed(1)} per second, peak ${Math.max(...values).toFixed(1)}`
      : `${id}: no activity samples yet`,
  );
}

function percentile(sorted, p) {
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)];
}

/** Where `value` goes in ascending `sorted`: before the first that is not smaller. */
function sortedIndex(sorted, value) {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid] < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const BIN_EDGES = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000];

function drawLatencyCharts() {
  state.latencies = state.latencies.filter((l) => l.t >= clock.now() - WINDOW_MS);
  const [t0, t1] = timeDomain();
  const values = state.latencies.map((l) => l.ms);
  const sorted = [...values].sort((a, b) => a - b);
  const summary = $("#latency-summary");
  summary.dataset.count = String(values.length);
  summary.textContent = values.length
    ? `${values.length} acknowledgement${values.length === 1 ? "" : "s"} · median ${formatMs(percentile(sorted, 0.5))} · p95 ${formatMs(percentile(sorted, 0.95))} · max ${formatMs(sorted.at(-1))}`
    : state.historyOff
      ? "history is off: latencies from now on only"
      : "no acknowledgements in the last 15 minutes";
  drawLatencyOverTime(t0, t1, sorted);
  drawHistogram(sorted);
}

function drawLatencyOverTime(t0, t1, sorted) {
  const node = $("#latency-chart");
  const box = frame(node, 200, { left: 52, right: 10, top: 10, bottom: 22 });
  const lo = 10 ** Math.floor(Math.log10(Math.max(0.1, sorted[0] ?? 1)));
  const hi = Math.max(lo * 10, 10 ** Math.ceil(Math.log10(Math.max(1, sorted.at(-1) ?? 10))));
  const y = (v) =>
    box.bottom - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * (box.bottom - box.top);
  const decades = Math.round(Math.log10(hi / lo));
  for (let decade = lo; decade < hi * 1.01; decade *= 10) {
    for (const m of decades <= 2 ? [1, 2, 5] : [1]) {
      const v = decade * m;
      if (v > hi * 1.01) break;
      node.append(svg("line", { class: "grid", x1: box.left, x2: box.right, y1: y(v), y2: y(v) }));
      node.append(svg("text", { x: box.left - 6, y: y(v) + 4, "text-anchor": "end" }, tickMs(v)));
    }
  }
  const x = timeAxis(node, box, t0, t1);
  const dots = svg("g", { class: "acks" });
  for (const l of state.latencies) {
    dots.append(svg("circle", { class: "ack", cx: x(l.t).toFixed(1), cy: y(l.ms).toFixed(1), r: 2.5 }));
  }
  node.append(dots);
  // Percentiles over time: at each acknowledgement, those of the minute up to it (kept
  // sorted as it slides: sorting each minute again was quadratic in a fleet's acks).
  const byTime = [...state.latencies].sort((a, b) => a.t - b.t);
  const minute = [];
  const lines = { p50: [], p95: [] };
  let from = 0;
  for (const l of byTime) {
    minute.splice(sortedIndex(minute, l.ms), 0, l.ms);
    while (byTime[from].t < l.t - 60_000) minute.splice(sortedIndex(minute, byTime[from++].ms), 1);
    lines.p50.push({ t: l.t, v: percentile(minute, 0.5) });
    lines.p95.push({ t: l.t, v: percentile(minute, 0.95) });
  }
  for (const [name, points] of Object.entries(lines)) {
    if (points.length) {
      node.append(svg("path", { class: `percentile ${name}`, d: pathOf(points, x, y), "data-points": String(points.length) }));
    }
  }
  node.setAttribute(
    "aria-label",
    sorted.length
      ? `Command latency over the last 15 minutes, each acknowledgement a dot, with the median and 95th percentile of the minute before each; median ${formatMs(percentile(sorted, 0.5))}.`
      : "Command latency over the last 15 minutes: no acknowledgements.",
  );
}

function drawHistogram(sorted) {
  const node = $("#latency-histogram");
  const box = frame(node, 200, { left: 36, right: 10, top: 16, bottom: 22 });
  const top = sorted.at(-1) ?? 0;
  let last = BIN_EDGES.findIndex((edge) => edge > top); // first edge above every value
  if (last === -1) last = BIN_EDGES.length; // beyond the last edge: an open bin
  last = Math.max(last, BIN_EDGES.indexOf(50));
  const counts = new Array(last).fill(0);
  for (const v of sorted) {
    let bin = BIN_EDGES.findIndex((edge) => edge > v) - 1;
    if (bin < 0) bin = BIN_EDGES.length - 1;
    counts[Math.min(bin, last - 1)] += 1;
  }
  const { y } = linearAxis(node, box, Math.max(1, ...counts), { integers: true });
  const slot = (box.right - box.left) / counts.length;
  const label = (ms) => (ms >= 1000 ? `${ms / 1000}s` : String(ms));
  counts.forEach((count, i) => {
    const x = box.left + i * slot;
    const hi = i + 1 < BIN_EDGES.length ? BIN_EDGES[i + 1] : Infinity;
    const bar = svg("rect", {
      class: "bar",
      x: (x + 1).toFixed(1),
      y: y(count).toFixed(1),
      width: Math.max(1, slot - 2).toFixed(1),
      height: (box.bottom - y(count)).toFixed(1),
      "data-count": String(count),
    });
    bar.append(svg("title", {}, `${label(BIN_EDGES[i])}–${hi === Infinity ? "" : label(hi)} ms: ${count}`));
    node.append(bar);
    if (count) node.append(svg("text", { x: x + slot / 2, y: y(count) - 3, "text-anchor": "middle" }, String(count)));
    if (slot >= 22 || i % 2 === 0) {
      node.append(svg("text", { x, y: box.height - 6, "text-anchor": "middle" }, label(BIN_EDGES[i])));
    }
  });
  node.append(svg("line", { class: "axis", x1: box.left, x2: box.right, y1: box.bottom, y2: box.bottom }));
  node.append(svg("text", { x: box.right, y: box.height - 6, "text-anchor": "end" }, "ms"));
  node.setAttribute(
    "aria-label",
    `Histogram of command latencies in milliseconds: ${counts
      .map((c, i) => (c ? `${c} from ${label(BIN_EDGES[i])}` : null))
      .filter(Boolean)
      .join(", ") || "none"}.`,
  );
}

// -- start ------------------------------------------------------------------------------

for (const [id, active] of [["#fleet-activate", true], ["#fleet-deactivate", false]]) {
  const button = $(id);
  button.addEventListener("click", () => steer(FLEET, active, button));
}
// A link sends no token: with one, the metrics are read here, with it, and shown in the
// tab the link opens (as the same text a scraper gets) instead of a 401.
$("#metrics-link").addEventListener("click", async (event) => {
  if (!auth.token) return;
  event.preventDefault();
  const tab = window.open("", "_blank"); // now, while the click lets a tab open
  if (!tab) return notice("could not open a tab for the metrics", true);
  try {
    const response = await api.request("metrics");
    if (!response.ok) throw new ApiError(response.status, `the monitor answered ${response.status}`);
    const url = URL.createObjectURL(new Blob([await response.text()], { type: "text/plain" }));
    tab.location = url;
    setTimeout(() => URL.revokeObjectURL(url), 60_000); // the tab has its copy by then
  } catch (error) {
    tab.close();
    notice(`could not read the metrics: ${error.message}`, true);
  }
});
const stream = api.stream("api/stream", { onEvent: onStreamEvent, onDown: onStreamDown });
setInterval(renderTimes, 1000);
setInterval(() => {
  if (state.live) readHealth();
}, HEALTH_EVERY_MS);
setInterval(readActivity, ACTIVITY_EVERY_MS);
setInterval(scheduleCharts, 5000); // the time axes move on
window.addEventListener("resize", scheduleCharts);
render();
