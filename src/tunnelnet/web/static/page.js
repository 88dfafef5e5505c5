// tunnelnet's page: the lab drawn with cytoscape, refreshed every 2 s; a trace animated hop
// by hop; a bridge's flow table on click. No build step, nothing from the internet.
"use strict";

const TENANT_COLOURS = ["#e53935", "#1e88e5", "#43a047", "#8e24aa", "#fb8c00", "#00897b"];
const NET_COLOURS = ["#b71c1c", "#0d47a1", "#1b5e20", "#4a148c", "#e65100", "#004d40"];
const REFRESH_MS = 2000;
// ?step=MS sets the animation's pace (450 ms a hop by default)
const STEP_MS = Number(new URLSearchParams(location.search).get("step")) || 450;

const page = { state: null, trace: null, path: [], animating: null, flowsOf: null,
               refreshes: 0, cy: null };
window.tunnelnet = page;  // for the browser test and the curious

const cy = cytoscape({
  container: document.getElementById("cy"),
  style: [
    { selector: "node", style: { "label": "data(label)", "font-size": 11,
      "text-valign": "center", "text-halign": "center", "text-wrap": "wrap" } },
    { selector: "node.hv", style: { "shape": "round-rectangle", "background-color": "#eceff1",
      "border-color": "#607d8b", "border-width": 2, "text-valign": "top",
      "font-weight": "bold", "padding": 18 } },
    { selector: "node.hv.dead", style: { "background-color": "#cfd8dc",
      "border-style": "dashed", "color": "#b71c1c" } },
    { selector: "node.bridge", style: { "shape": "round-rectangle", "width": 90, "height": 34,
      "background-color": "#fff", "border-color": "#455a64", "border-width": 2 } },
    { selector: "node.vm", style: { "shape": "ellipse", "width": 64, "height": 40,
      "background-color": "data(colour)", "border-color": "data(netColour)",
      "border-width": 4, "color": "#fff", "text-outline-width": 2,
      "text-outline-color": "data(colour)" } },
    { selector: "node.vm.down", style: { "border-style": "dashed", "opacity": 0.5 } },
    { selector: "edge", style: { "width": 2, "line-color": "#90a4ae", "curve-style": "bezier",
      "label": "data(label)", "font-size": 9, "text-rotation": "autorotate",
      "text-background-color": "#fff", "text-background-opacity": 0.8 } },
    { selector: "edge.tunnel", style: { "line-style": "dashed", "width": 3 } },
    { selector: "edge.tunnel.gre", style: { "line-color": "#7e57c2" } },
    { selector: "edge.tunnel.vxlan", style: { "line-color": "#26a69a" } },
    { selector: "edge.tunnel.geneve", style: { "line-color": "#1e88e5" } },
    { selector: "edge.onpath", style: { "line-color": "#ff6f00", "width": 6, "z-index": 10 } },
    { selector: "node.onpath", style: { "border-color": "#ff6f00", "z-index": 10 } },
    { selector: "node.bridge.onpath", style: { "background-color": "#ffe0b2",
      "border-width": 4 } },
    { selector: ".current", style: { "overlay-color": "#ff6f00", "overlay-opacity": 0.25 } },
    { selector: ".dropped", style: { "background-color": "#ffcdd2", "border-color": "#b71c1c",
      "line-color": "#b71c1c", "border-width": 5 } },
    { selector: "node.whatif", style: { "border-color": "#b71c1c", "border-style": "dashed",
      "border-width": 4, "label": "data(label)" } },
    { selector: "node.bridge.selected", style: { "border-color": "#1565c0",
      "border-width": 5 } },
  ],
  elements: [],
  layout: { name: "preset" },
});
page.cy = cy;

// A tenant named after a colour ("red", "blue") is drawn in it; others take the palette.
function colourMap(names, palette, useNames) {
  const out = {};
  [...new Set(names)].sort().forEach((n, i) => {
    out[n] = useNames && CSS.supports("color", n) ? n : palette[i % palette.length];
  });
  return out;
}

function elementsOf(state) {
  const els = [];
  const tenants = colourMap(state.vms.map(v => v.tenant), TENANT_COLOURS, true);
  const nets = colourMap(state.vms.map(v => v.network), NET_COLOURS, false);
  state.hypervisors.forEach((hv, i) => {
    const x = i * 360;
    const dead = hv.agent_alive === false || !hv.switch_up;
    els.push({ group: "nodes", data: { id: `hv:${hv.name}`,
      label: `${hv.name} ${hv.ip}${dead ? " (agent down)" : ""}` },
      classes: "hv" + (dead ? " dead" : "") });
    els.push({ group: "nodes", data: { id: `br:${hv.name}:br-tun`, parent: `hv:${hv.name}`,
      label: "br-tun", host: hv.name, bridge: "br-tun" }, classes: "bridge",
      position: { x, y: 0 } });
    els.push({ group: "nodes", data: { id: `br:${hv.name}:br-int`, parent: `hv:${hv.name}`,
      label: "br-int", host: hv.name, bridge: "br-int" }, classes: "bridge",
      position: { x, y: 110 } });
    els.push({ group: "edges", data: { id: `patch:${hv.name}`, source: `br:${hv.name}:br-int`,
      target: `br:${hv.name}:br-tun`, label: "patch" } });
    const vms = state.vms.filter(v => v.hypervisor === hv.name);
    vms.forEach((vm, k) => {
      const vx = x + (k - (vms.length - 1) / 2) * 85;
      els.push({ group: "nodes", data: { id: `vm:${vm.name}`, parent: `hv:${hv.name}`,
        label: `${vm.name}\n${vm.ip}`, colour: tenants[vm.tenant], netColour: nets[vm.network],
        tenant: vm.tenant, network: vm.network },
        classes: "vm" + (vm.status === "ACTIVE" ? "" : " down"), position: { x: vx, y: 230 } });
      els.push({ group: "edges", data: { id: `vnic:${vm.name}`, source: `vm:${vm.name}`,
        target: `br:${hv.name}:br-int`, label: vm.port } });
    });
  });
  const seen = new Set();
  state.hypervisors.forEach(hv => hv.tunnels.forEach(t => {
    if (!t.remote_host) return;
    const id = tunnelId(hv.name, t.remote_host, t.type);
    if (seen.has(id)) return;
    seen.add(id);
    els.push({ group: "edges", data: { id, source: `br:${hv.name}:br-tun`,
      target: `br:${t.remote_host}:br-tun`, label: t.title || t.type },
      classes: `tunnel ${t.type}` });
  }));
  return els;
}

function tunnelId(a, b, type) {
  const [x, y] = [a, b].sort();
  return `tun:${x}:${y}:${type}`;
}

function applyState(state) {
  const wanted = elementsOf(state);
  const ids = new Set(wanted.map(e => e.data.id));
  cy.batch(() => {
    cy.elements().forEach(el => { if (!ids.has(el.id())) el.remove(); });
    wanted.filter(e => e.group === "nodes").concat(wanted.filter(e => e.group === "edges"))
      .forEach(e => {
        const el = cy.getElementById(e.data.id);
        if (el.empty()) {
          cy.add(e);
        } else {
          el.data(e.data);
          const keep = ["onpath", "current", "dropped", "selected", "whatif"].filter(c => el.hasClass(c));
          el.classes((e.classes || "") + " " + keep.join(" "));
        }
      });
  });
  if (!page.state) cy.fit(undefined, 30);
  fillSelect("src", state.vms);
  fillSelect("dst", state.vms, 1);
  const alive = state.hypervisors.filter(h => h.agent_alive !== false && h.switch_up).length;
  const tunnels = state.hypervisors.reduce((n, h) => n + h.tunnels.length, 0);
  document.getElementById("live").textContent =
    `${alive}/${state.hypervisors.length} hypervisors up, ${tunnels} tunnel ports, ` +
    `${state.vms.length} VMs — refreshed ${new Date().toLocaleTimeString()}`;
  page.state = state;
  page.refreshes += 1;
}

function fillSelect(id, vms, pick = 0) {
  const sel = document.getElementById(id);
  const names = vms.map(v => v.name);
  const have = [...sel.options].map(o => o.value);
  if (have.join() === names.join()) return;
  const keep = sel.value;
  sel.innerHTML = "";
  vms.forEach(v => sel.add(new Option(`${v.name} (${v.tenant}/${v.network}, ${v.hypervisor})`,
                                      v.name)));
  sel.value = names.includes(keep) ? keep : (names[pick] || "");
}

async function refresh() {
  try {
    const r = await fetch("/api/state");
    if (r.ok) applyState(await r.json());
  } catch (e) { document.getElementById("live").textContent = `lab unreachable: ${e}`; }
  if (page.flowsOf) showFlows(page.flowsOf.host, page.flowsOf.bridge);
}

// -- the trace ----------------------------------------------------------------------------

// The path as cytoscape element ids, in the order the packet meets them; each entry also
// says which visit (bridge block of the side panel) it belongs to.
function pathOf(j) {
  const out = [];
  const visits = j.visits.filter(v => !v.hypothetical);
  const byId = Object.fromEntries(visits.map(v => [v.id, v]));
  const vmAt = (host, port) => (page.state.vms.find(v => v.hypervisor === host &&
                                                        v.port === port) || {}).name;
  visits.forEach(v => {
    const parent = v.parent === null ? null : byId[v.parent];
    if (parent === null || parent === undefined) {
      const vm = vmAt(v.host, v.in_port);
      if (vm) { out.push({ id: `vm:${vm}`, visit: v.id }, { id: `vnic:${vm}`, visit: v.id }); }
    } else if (parent.host === v.host) {
      out.push({ id: `patch:${v.host}`, visit: v.id });
    } else {
      const exit = parent.exits.find(e => e.next_visit === v.id);
      const type = exit && exit.encap !== null ? j.encapsulation[exit.encap].type : "vxlan";
      out.push({ id: tunnelId(parent.host, v.host, type), visit: v.id });
    }
    out.push({ id: `br:${v.host}:${v.bridge}`, visit: v.id,
               dropped: v.drop || v.exits.length === 0 });
    v.exits.filter(e => e.kind === "vm").forEach(e => {
      out.push({ id: `vnic:${e.vm}`, visit: v.id }, { id: `vm:${e.vm}`, visit: v.id });
    });
  });
  return out;
}

function esc(s) {
  return String(s).replace(/[&<>"]/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;",
                                              '"': "&quot;" }[c]));
}

function renderSteps(j) {
  const box = document.getElementById("steps");
  box.innerHTML = "";
  j.visits.forEach(v => {
    const sec = document.createElement("section");
    sec.className = "visit" + (v.hypothetical ? " hypothetical shown" : "");
    sec.dataset.visit = v.id;
    sec.dataset.host = v.host;
    sec.dataset.bridge = v.bridge;
    sec.dataset.hypothetical = v.hypothetical;
    let html = `<h3>${v.hypothetical ? "What if: " : ""}${esc(v.host)} ${esc(v.bridge)}` +
               ` <small>in_port ${esc(v.in_port)}</small></h3>` +
               `<p class="why">${esc(v.explanation)}</p><ol class="steps">`;
    v.steps.forEach(s => {
      html += `<li data-table="${s.table}" value="${s.table}"><code>` +
              `${s.priority < 0 ? "no match" : `priority=${s.priority}` +
                (s.match ? "," + esc(s.match) : "")} actions=${esc(s.actions || "drop")}` +
              `</code><span class="expl">${esc(s.explanation)}</span></li>`;
    });
    html += "</ol>";
    v.exits.forEach(e => {
      if (e.encap !== null) {
        html += `<div class="encap">${esc(j.encapsulation[e.encap].explanation)}</div>`;
      }
    });
    if (v.drop || v.exits.length === 0) html += `<div class="drop">dropped here</div>`;
    sec.innerHTML = html;
    box.appendChild(sec);
  });
}

function animate(j) {
  if (page.animating) clearInterval(page.animating);
  cy.elements().removeClass("onpath current dropped whatif");
  const path = pathOf(j);
  page.path = [];
  const status = document.getElementById("status");
  status.dataset.state = "animating";
  status.textContent = "…";
  let i = 0;
  page.animating = setInterval(() => {
    if (i >= path.length) {
      clearInterval(page.animating);
      page.animating = null;
      status.dataset.state = "done";
      status.textContent = j.outcome.delivered ? "delivered" : "not delivered";
      cy.elements().removeClass("current");
      // "what if" visits: the table that would refuse the frame, marked where it stands
      j.visits.filter(v => v.hypothetical && (v.drop || v.exits.length === 0))
        .forEach(v => cy.getElementById(`br:${v.host}:${v.bridge}`).addClass("whatif"));
      return;
    }
    const hop = path[i++];
    const el = cy.getElementById(hop.id);
    cy.elements().removeClass("current");
    el.addClass("onpath current");
    if (hop.dropped) el.addClass("dropped");
    page.path.push(hop.id);
    document.querySelectorAll("section.visit").forEach(s => s.classList.remove("current"));
    const sec = document.querySelector(`section.visit[data-visit="${hop.visit}"]`);
    if (sec) { sec.classList.add("shown", "current"); sec.scrollIntoView({ block: "nearest" }); }
  }, STEP_MS);
}

async function runTrace(ev) {
  if (ev) ev.preventDefault();
  const src = document.getElementById("src").value;
  const dst = document.getElementById("dst").value;
  const proto = document.getElementById("proto").value;
  const status = document.getElementById("status");
  status.dataset.state = "tracing";
  status.textContent = "tracing…";
  const r = await fetch(`/api/trace?src=${encodeURIComponent(src)}&dst=` +
                        `${encodeURIComponent(dst)}&proto=${proto}`);
  const body = await r.json();
  const summary = document.getElementById("summary");
  if (!r.ok) {
    status.dataset.state = "error";
    status.textContent = body.detail || "error";
    return;
  }
  page.trace = body;
  summary.textContent = body.outcome.summary;
  summary.className = body.outcome.delivered ? "" : "dropped";
  renderSteps(body);
  animate(body);
}

// -- a bridge's flow table ----------------------------------------------------------------

async function showFlows(host, bridge) {
  const r = await fetch(`/api/flows?host=${encodeURIComponent(host)}&bridge=${bridge}`);
  const title = document.getElementById("flows-title");
  const pre = document.getElementById("flows");
  title.hidden = pre.hidden = false;
  title.textContent = `${host} ${bridge}: dump-flows (live counters)`;
  if (!r.ok) { pre.textContent = (await r.json()).detail; return; }
  // the flows the last trace matched on this bridge are highlighted
  const hits = new Set();
  if (page.trace) {
    page.trace.visits.filter(v => v.host === host && v.bridge === bridge && !v.hypothetical)
      .forEach(v => v.steps.forEach(st => hits.add(`${st.table}|${st.priority}|${st.match}`)));
  }
  pre.innerHTML = "";
  (await r.json()).flows.forEach(line => {
    const m = line.match(/table=(\d+), .*?priority=(\d+),?(\S*) actions=/);
    const div = document.createElement("div");
    div.textContent = line;
    if (m && hits.has(`${m[1]}|${m[2]}|${m[3]}`)) div.className = "hit";
    pre.appendChild(div);
  });
  pre.dataset.host = host;
  pre.dataset.bridge = bridge;
}

cy.on("tap", "node.bridge", ev => {
  const d = ev.target.data();
  cy.nodes(".bridge").removeClass("selected");
  ev.target.addClass("selected");
  page.flowsOf = { host: d.host, bridge: d.bridge };
  showFlows(d.host, d.bridge);
});

document.getElementById("trace-form").addEventListener("submit", runTrace);
refresh();
setInterval(refresh, REFRESH_MS);
