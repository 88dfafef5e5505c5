// tunnelnet's page: the lab drawn with cytoscape, refreshed every 2 s; a trace animated hop
// by hop; a bridge's flow table on click. No build step, nothing from the internet.
"use strict";

// one colour per tenant (a tenant named after a CSS colour, "red", is drawn in it); a VM is
// filled with it and ringed with a darker shade of it; the networks of one tenant differ by
// the ring's style. Tunnel kinds take their colour in the registry's order.
const TENANT_PALETTE = ["#1e88e5", "#e53935", "#43a047", "#8e24aa", "#fb8c00", "#00897b",
                        "#6d4c41", "#3949ab"];
const RING_SHADE = 0.6;  // the ring's channels are the fill's times this (same hue)
const NET_STYLES = ["solid", "dashed", "dotted", "double"];
const KIND_COLOURS = ["#26a69a", "#7e57c2", "#ef6c00", "#5d4037", "#c2185b"];
const REFRESH_MS = 2000;
const HV_MARGIN = 30;  // the least room between two hypervisors' boxes
const FLAT = 0.6;  // the hypervisors' ellipse: its height over its width
// ?step=MS sets the animation's pace (450 ms a hop by default)
const STEP_MS = Number(new URLSearchParams(location.search).get("step")) || 450;
const KEEP = ["onpath", "current", "dropped", "selected", "whatif", "visited", "copy",
              "destination", "discarded"];

const page = { state: null, trace: null, path: [], marks: null, animating: null,
               flowsOf: null, refreshes: 0, cy: null, layoutKey: "", colours: {},
               down: null };
window.tunnelnet = page;  // for the browser test and the curious

function vmLabel(ele) {
  const d = ele.data();
  if (d.mark === "destination") return `✓ ${d.name}\ndestination\n${d.ip}`;
  if (d.mark === "discarded") return `✗ ${d.name}\ndiscarded\n${d.ip}`;
  return `${d.name}\n${d.ip}`;
}

const cy = cytoscape({
  container: document.getElementById("cy"),
  style: [
    { selector: "node", style: { "label": "data(label)", "font-size": 11,
      "text-valign": "center", "text-halign": "center", "text-wrap": "wrap" } },
    { selector: "node.hv", style: { "shape": "round-rectangle", "background-color": "#eceff1",
      "border-color": "#607d8b", "border-width": 2, "text-valign": "data(valign)",
      "font-weight": "bold", "padding": 18 } },
    { selector: "node.hv.dead", style: { "background-color": "#cfd8dc",
      "border-style": "dashed", "border-color": "#b71c1c", "color": "#b71c1c" } },
    { selector: "node.bridge", style: { "shape": "round-rectangle", "width": 90, "height": 34,
      "background-color": "#fff", "border-color": "#455a64", "border-width": 2 } },
    { selector: "node.underlay", style: { "shape": "round-rectangle", "width": 120,
      "height": 44, "background-color": "#455a64", "color": "#fff", "font-size": 10 } },
    { selector: "node.vm", style: { "shape": "ellipse", "width": 84, "height": 46,
      "label": vmLabel, "background-color": "data(fill)", "border-color": "data(ring)",
      "border-style": "data(ringStyle)", "border-width": 5, "color": "#fff",
      "text-outline-width": 2, "text-outline-color": "data(ring)" } },
    { selector: "node.vm.down", style: { "opacity": 0.5 } },
    { selector: "edge", style: { "width": 2, "line-color": "#90a4ae", "curve-style": "bezier",
      "label": "data(label)", "font-size": 9, "text-rotation": "autorotate",
      "text-wrap": "wrap", "text-background-color": "#fff",
      "text-background-opacity": 0.85 } },
    { selector: "edge.underlay", style: { "width": 5, "line-color": "#b0bec5" } },
    { selector: "edge.physical", style: { "width": 4, "line-color": "#8d6e63",
      "line-style": "solid", "font-size": 10 } },
    { selector: "node.bridge.physical", style: { "width": 110, "border-color": "#8d6e63" } },
    { selector: "edge.tunnel", style: { "line-style": "dashed", "width": 3,
      "line-color": "data(colour)", "font-size": 10, "control-point-step-size": 70 } },
    // a tunnel whose BFD session is not up, from either end: red and dotted
    { selector: "edge.tunnel.down", style: { "line-color": "#d32f2f", "line-style": "dotted",
      "width": 4, "color": "#b71c1c" } },
    { selector: "edge.copy", style: { "line-color": "#ffb74d", "width": 4,
      "line-style": "dotted", "z-index": 9 } },
    { selector: "edge.onpath", style: { "line-color": "#ff6f00", "width": 6, "z-index": 10,
      "line-style": "solid" } },
    { selector: "node.bridge.copy", style: { "background-color": "#fff3e0",
      "border-style": "dotted", "border-color": "#ffb74d", "border-width": 4 } },
    { selector: "node.bridge.onpath", style: { "background-color": "#ffe0b2",
      "border-color": "#ff6f00", "border-width": 4 } },
    { selector: "node.vm.destination", style: { "outline-color": "#2e7d32",
      "outline-width": 5, "outline-offset": 3, "z-index": 10 } },
    { selector: "node.vm.discarded", style: { "opacity": 0.55, "outline-color": "#616161",
      "outline-width": 3, "outline-style": "dashed", "outline-offset": 3 } },
    { selector: ".current", style: { "overlay-color": "#ff6f00", "overlay-opacity": 0.25 } },
    { selector: "node.bridge.dropped", style: { "background-color": "#ffcdd2",
      "border-color": "#b71c1c", "border-width": 5 } },
    { selector: "node.whatif", style: { "border-color": "#b71c1c", "border-style": "dashed",
      "border-width": 4 } },
    { selector: "node.bridge.selected", style: { "border-color": "#1565c0",
      "border-width": 5 } },
  ],
  elements: [],
  layout: { name: "preset" },
});
page.cy = cy;

// -- colours --------------------------------------------------------------------------------

const probeEl = document.createElement("span");
document.body.appendChild(probeEl);

function rgbOf(css) {
  probeEl.style.color = "";
  probeEl.style.color = css;
  const m = getComputedStyle(probeEl).color.match(/\d+(\.\d+)?/g) || ["0", "0", "0"];
  return m.slice(0, 3).map(Number);
}

const css = c => `rgb(${c.map(Math.round).join(",")})`;

function tenantColours(tenants) {
  const out = {};
  let next = 0;
  const taken = new Set();
  [...new Set(tenants)].sort().forEach(t => {
    if (CSS.supports("color", t)) { out[t] = rgbOf(t); taken.add(css(out[t])); }
  });
  [...new Set(tenants)].sort().forEach(t => {
    if (out[t]) return;
    let c = rgbOf(TENANT_PALETTE[next++ % TENANT_PALETTE.length]);
    while (taken.has(css(c)) && next < 2 * TENANT_PALETTE.length) {
      c = rgbOf(TENANT_PALETTE[next++ % TENANT_PALETTE.length]);
    }
    taken.add(css(c));
    out[t] = c;
  });
  return out;
}

function coloursOf(state) {
  const tenants = tenantColours(state.networks.map(n => n.tenant)
    .concat(state.vms.map(v => v.tenant)));
  const netStyle = {};
  Object.keys(tenants).forEach(t => {
    state.networks.filter(n => n.tenant === t).map(n => n.name).sort()
      .forEach((n, i) => { netStyle[n] = NET_STYLES[i % NET_STYLES.length]; });
  });
  state.vms.forEach(v => { if (!netStyle[v.network]) netStyle[v.network] = "solid"; });
  const kinds = {};
  (state.tunnel_kinds || []).forEach((k, i) => {
    kinds[k.name] = { ...k, colour: KIND_COLOURS[i % KIND_COLOURS.length] };
  });
  return { tenants, netStyle, kinds };
}

// -- elements ------------------------------------------------------------------------------

function tunnelId(a, b, type) {
  const [x, y] = [a, b].sort();
  return `tun:${x}:${y}:${type}`;
}

function physicalId(a, b) {
  const [x, y] = [a, b].sort();
  return `phys:${x}:${y}`;
}

function tunnelLabel(kind, keyName, keys, ips) {
  const carried = keys.length ? `${keyName} ${keys.join(", ")}` : "no network at both ends";
  return `${kind} · ${carried}\n${ips[0]} ⇄ ${ips[1]}`;
}

function elementsOf(state, colours) {
  const els = [];
  state.hypervisors.forEach((hv, i) => {
    // the name on the side away from the tunnels
    const valign = frame(i, state.hypervisors.length).u.y > 0 ? "bottom" : "top";
    const dead = hv.agent_alive === false || !hv.switch_up;
    const why = !hv.switch_up ? "switch not answering"
      : hv.agent_alive === false ? `agent down: ${hv.agent_why}` : "";
    els.push({ group: "nodes", data: { id: `hv:${hv.name}`, host: hv.name, valign,
      label: `${hv.name} ${hv.ip}${why ? `\n${why}` : ""}`, alive: !dead },
      classes: "hv" + (dead ? " dead" : "") });
    ["br-tun", "br-int"].forEach(br => els.push({ group: "nodes", data: {
      id: `br:${hv.name}:${br}`, parent: `hv:${hv.name}`, label: br, host: hv.name,
      bridge: br }, classes: "bridge" }));
    els.push({ group: "edges", data: { id: `patch:${hv.name}`, source: `br:${hv.name}:br-int`,
      target: `br:${hv.name}:br-tun`, label: "patch" }, classes: "patch" });
    if (hv.physical) {
      // VLAN and flat networks leave through the physical bridge and its uplink, untunnelled
      const br = hv.physical.bridge;
      els.push({ group: "nodes", data: { id: `br:${hv.name}:${br}`, parent: `hv:${hv.name}`,
        label: `${br} (${hv.physical.uplink})`, host: hv.name, bridge: br },
        classes: "bridge physical" });
      els.push({ group: "edges", data: { id: `phypatch:${hv.name}`,
        source: `br:${hv.name}:br-int`, target: `br:${hv.name}:${br}`, label: "patch" },
        classes: "patch" });
    }
    state.vms.filter(v => v.hypervisor === hv.name).forEach(vm => {
      const fill = colours.tenants[vm.tenant];
      els.push({ group: "nodes", data: { id: `vm:${vm.name}`, parent: `hv:${hv.name}`,
        name: vm.name, ip: vm.ip, fill: css(fill), ring: css(fill.map(c => c * RING_SHADE)),
        ringStyle: colours.netStyle[vm.network], tenant: vm.tenant, network: vm.network },
        classes: "vm" + (vm.status === "ACTIVE" ? "" : " down") });
      els.push({ group: "edges", data: { id: `vnic:${vm.name}`, source: `vm:${vm.name}`,
        target: `br:${hv.name}:br-int`, label: vm.port }, classes: "vnic" });
    });
  });
  // the underlay: the IP network every tunnel crosses, each hypervisor on it with its address
  const mtu = state.underlay && state.underlay.mtu ? `, MTU ${state.underlay.mtu}` : "";
  els.push({ group: "nodes", data: { id: "underlay", label: `underlay\nIP network${mtu}` },
             classes: "underlay" });
  state.hypervisors.forEach(hv => els.push({ group: "edges", data: { id: `ul:${hv.name}`,
    source: "underlay", target: `br:${hv.name}:br-tun`, label: `eth0 ${hv.ip}`,
    ip: hv.ip }, classes: "underlay" }));
  const seen = new Set();
  // a tunnel is drawn once for both ends; it is down when either end's BFD says so
  const down = {};
  state.hypervisors.forEach(hv => hv.tunnels.forEach(t => {
    if (!t.remote_host || !t.state || t.state === "up") return;
    const since = typeof t.since_change_s === "number" ? ` ${Math.round(t.since_change_s)} s` : "";
    down[tunnelId(hv.name, t.remote_host, t.type)] = `${t.state.toUpperCase()}${since}`;
  }));
  state.hypervisors.forEach(hv => hv.tunnels.forEach(t => {
    if (!t.remote_host) return;
    const id = tunnelId(hv.name, t.remote_host, t.type);
    if (seen.has(id)) return;
    seen.add(id);
    const [a, b] = [hv.name, t.remote_host].sort();
    const ips = a === hv.name ? [t.local_ip, t.remote_ip] : [t.remote_ip, t.local_ip];
    const keys = t.networks.map(n => n.key);
    const kind = colours.kinds[t.type] || { colour: "#90a4ae" };
    const label = tunnelLabel(t.title, t.key_name, keys, ips) + (down[id] ? `\n${down[id]}` : "");
    els.push({ group: "edges", data: { id, source: `br:${a}:br-tun`, target: `br:${b}:br-tun`,
      label, kind: t.type, title: t.title, keys, endpoints: ips, colour: kind.colour,
      state: down[id] ? "down" : "up" },
      classes: `tunnel ${t.type}${down[id] ? " down" : ""}` });
  }));
  // the physical network between two hypervisors' physical bridges, with the VLANs it
  // carries for networks on both
  const phys = Object.fromEntries(state.hypervisors.filter(h => h.physical)
    .map(h => [h.name, h.physical]));
  (state.physical_links || []).forEach(l => {
    const vlans = l.networks.map(n => n.type === "flat" ? "untagged (flat)" : `VLAN ${n.key}`);
    els.push({ group: "edges", data: { id: physicalId(l.a, l.b),
      source: `br:${l.a}:${phys[l.a].bridge}`, target: `br:${l.b}:${phys[l.b].bridge}`,
      label: `physical network · ${vlans.join(", ")}\n${phys[l.a].uplink} ⇄ ` +
             `${phys[l.b].uplink}`, keys: l.networks.map(n => n.key) },
      classes: "physical" });
  });
  return els;
}

// -- layout: hypervisors round a circle, br-tun facing the middle ---------------------------
//
// Tunnels join br-tun to br-tun; with every br-tun on a circle (a convex polygon) and each
// hypervisor's br-int and VMs placed outward, no tunnel chord runs through a third
// hypervisor. The underlay sits inside, where no chord passes. Whatever the sizes, the
// drawing is checked with the rendered boxes and the circle grows until nothing is crossed.

// hypervisor i of n: its angle on the circle, the outward axis u and the axis v along which
// its VMs line up
function frame(i, n) {
  const a = -Math.PI / 2 - Math.PI / Math.max(n, 1) + (2 * Math.PI * i) / n;
  // outward along the nearer axis (boxes are axis-aligned)
  const vertical = n === 1 || Math.abs(Math.sin(a)) >= 0.38;
  const u = vertical ? { x: 0, y: n === 1 || Math.sin(a) > 0 ? 1 : -1 }
    : { x: Math.cos(a) > 0 ? 1 : -1, y: 0 };
  return { a, vertical, u, v: vertical ? { x: 1, y: 0 } : { x: 0, y: 1 } };
}

function place(R) {
  const hvs = page.state.hypervisors;
  const n = hvs.length;
  hvs.forEach((hv, i) => {
    const { a, vertical, u, v } = frame(i, n);
    // an ellipse (still convex) flattened to the drawing's landscape shape
    const p = n === 1 ? { x: 0, y: 0 } : { x: R * Math.cos(a), y: FLAT * R * Math.sin(a) };
    const gap = vertical ? 100 : 55;
    cy.getElementById(`br:${hv.name}:br-tun`).position({ x: p.x, y: p.y });
    const step = vertical ? 62 : 130;  // bridges are wider than tall
    cy.getElementById(`br:${hv.name}:br-int`).position({ x: p.x + step * u.x,
                                                         y: p.y + step * u.y });
    if (hv.physical) {
      // beside br-int, away from the VMs' row
      const side = vertical ? 130 : 70;
      cy.getElementById(`br:${hv.name}:${hv.physical.bridge}`).position({
        x: p.x + step * u.x + side * v.x, y: p.y + step * u.y + side * v.y });
    }
    const vms = page.state.vms.filter(vm => vm.hypervisor === hv.name);
    const depth = vertical ? 124 : 260;
    vms.forEach((vm, k) => {
      const off = (k - (vms.length - 1) / 2) * gap;
      cy.getElementById(`vm:${vm.name}`).position({ x: p.x + depth * u.x + off * v.x,
                                                    y: p.y + depth * u.y + off * v.y });
    });
  });
}

function box(node) {
  return node.boundingBox({ includeLabels: false, includeOverlays: false,
                            includeUnderlays: false, includeOutlines: false });
}

// Liang-Barsky: does the segment p-q enter box b (shrunk by a pixel)?
function segmentHitsBox(p, q, b) {
  const [x1, y1, x2, y2] = [b.x1 + 1, b.y1 + 1, b.x2 - 1, b.y2 - 1];
  let t0 = 0;
  let t1 = 1;
  const dx = q.x - p.x;
  const dy = q.y - p.y;
  for (const [pk, qk] of [[-dx, p.x - x1], [dx, x2 - p.x], [-dy, p.y - y1], [dy, y2 - p.y]]) {
    if (pk === 0) { if (qk < 0) return false; continue; }
    const r = qk / pk;
    if (pk < 0) { if (r > t1) return false; if (r > t0) t0 = r; } else {
      if (r < t0) return false; if (r < t1) t1 = r;
    }
  }
  return t0 <= t1;
}

// [edge id, node id] for every edge whose straight line passes through a node that is
// neither of its ends nor a hypervisor holding one of them; and hypervisors (or the underlay)
// that overlap
function crossings() {
  const bad = [];
  const nodes = cy.nodes();
  cy.edges().forEach(e => {
    const s = e.source();
    const t = e.target();
    const ends = new Set([s.id(), t.id()]);
    s.ancestors().forEach(a => ends.add(a.id()));
    t.ancestors().forEach(a => ends.add(a.id()));
    nodes.forEach(nd => {
      if (!ends.has(nd.id()) && segmentHitsBox(s.position(), t.position(), box(nd))) {
        bad.push([e.id(), nd.id()]);
      }
    });
  });
  const hvs = cy.nodes(".hv, .underlay").toArray();
  hvs.forEach((a, i) => hvs.slice(i + 1).forEach(b => {
    const [p, q] = [box(a), box(b)];
    const m = HV_MARGIN;
    if (p.x1 - m < q.x2 && q.x1 - m < p.x2 && p.y1 - m < q.y2 && q.y1 - m < p.y2) {
      bad.push([a.id(), b.id()]);
    }
  }));
  return bad;
}
page.crossings = crossings;

function layout() {
  const ul = cy.getElementById("underlay");
  let R = 60 + 30 * page.state.hypervisors.length;
  for (let round = 0; round < 30; round++, R *= 1.15) {
    place(R);
    // the underlay in the middle, or near it where no tunnel passes
    const spots = [{ x: 0, y: 0 }];
    // and straight below or above the middle, clear of the boxes' row when there are only two
    [60, 100, 140, 180].forEach(dy => spots.push({ x: 0, y: dy }, { x: 0, y: -dy }));
    [0.2, 0.35, 0.5].forEach(f => { for (let k = 0; k < 8; k++) {
      spots.push({ x: f * R * Math.cos(k * Math.PI / 4),
                   y: FLAT * f * R * Math.sin(k * Math.PI / 4) });
    } });
    // of the spots where nothing is crossed, the one farthest from the tunnels (so their
    // labels stay readable), the middle when it is far enough
    let best = null;
    for (const spot of spots) {
      ul.position(spot);
      if (crossings().length) continue;
      const score = Math.min(110, clearance(spot)) - 0.01 * Math.hypot(spot.x, spot.y / FLAT);
      if (best === null || score > best.score) best = { spot, score };
    }
    if (best !== null) { ul.position(best.spot); return; }
  }
}

// how far a point is from the nearest tunnel's straight line
function clearance(pt) {
  let least = Infinity;
  cy.edges(".tunnel").forEach(e => {
    const a = e.source().position();
    const b = e.target().position();
    const [dx, dy] = [b.x - a.x, b.y - a.y];
    const len2 = dx * dx + dy * dy || 1;
    const t = Math.max(0, Math.min(1, ((pt.x - a.x) * dx + (pt.y - a.y) * dy) / len2));
    least = Math.min(least, Math.hypot(pt.x - a.x - t * dx, pt.y - a.y - t * dy));
  });
  return least;
}

// -- legend --------------------------------------------------------------------------------

function esc(s) {
  return String(s).replace(/[&<>"]/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;",
                                              '"': "&quot;" }[c]));
}

function renderLegend(state, colours) {
  let html = "";
  Object.entries(colours.tenants).forEach(([t, c]) => {
    const ring = css(c.map(x => x * RING_SHADE));
    html += `<div class="tenant" data-tenant="${esc(t)}"><span class="swatch" ` +
            `style="background:${css(c)};border:3px solid ${ring}"></span>tenant ${esc(t)}`;
    state.networks.filter(n => n.tenant === t).forEach(n => {
      html += `<div class="net" data-network="${esc(n.name)}"><span class="swatch" ` +
              `style="background:${css(c)};border:3px ${colours.netStyle[n.name]} ${ring}">` +
              `</span>${esc(n.name)} · ${esc(n.title)} ${esc(n.key_name)} ` +
              `${n.segment === null ? "" : esc(n.segment)}</div>`;
    });
    html += "</div>";
  });
  // the tunnel kinds this lab uses (the registry may know more)
  const used = new Set(state.networks.map(n => n.type).concat(
    state.hypervisors.flatMap(h => h.tunnels.map(t => t.type))));
  Object.values(colours.kinds).filter(k => used.has(k.name)).forEach(k => {
    html += `<div class="key" data-kind="${esc(k.name)}"><span class="line" style="border-top:` +
            `3px dashed ${k.colour}"></span>${esc(k.title)} tunnel (its ${esc(k.key_name)}s, ` +
            `its ends' addresses)</div>`;
  });
  html += `<div class="key"><span class="line" style="border-top:5px solid #b0bec5"></span>` +
          `underlay (each hypervisor's eth0)</div>`;
  if ((state.physical_links || []).length) {
    html += `<div class="key"><span class="line" style="border-top:4px solid #8d6e63"></span>` +
            `physical network (VLAN and flat networks, no tunnel)</div>`;
  }
  if (page.trace) {
    html += `<div class="key"><span class="line" style="border-top:5px solid #ff6f00"></span>` +
            `the way to the destination</div><div class="key"><span class="line" style=` +
            `"border-top:4px dotted #ffb74d"></span>a flooded copy</div>`;
  }
  const legend = document.getElementById("legend");
  if (legend.innerHTML !== html) legend.innerHTML = html;
}

// -- the state, every 2 s ------------------------------------------------------------------

function applyState(state) {
  page.state = state;
  const colours = coloursOf(state);
  page.colours = colours;
  const wanted = elementsOf(state, colours);
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
          const keep = KEEP.filter(c => el.hasClass(c));
          el.classes((e.classes || "") + " " + keep.join(" "));
        }
      });
  });
  const key = cy.nodes().map(n => n.id()).sort().join("|");
  if (key !== page.layoutKey) {
    layout();
    page.layoutKey = key;
    cy.fit(undefined, 30);
  }
  renderLegend(state, colours);
  // what did not answer this time (a switch, the controller): said, not hidden
  const warnings = document.getElementById("warnings");
  const text = (state.errors || []).join(" · ");
  warnings.hidden = !text;
  if (warnings.textContent !== text) warnings.textContent = text;
  fillSelect("src", state.vms);
  fillSelect("dst", state.vms, 1);
  const alive = state.hypervisors.filter(h => h.agent_alive !== false && h.switch_up).length;
  const tunnels = state.hypervisors.reduce((n, h) => n + h.tunnels.length, 0);
  const kind = state.lab && state.lab.kind ? `${state.lab.kind} lab: ` : "";
  document.getElementById("live").textContent =
    `${kind}${alive}/${state.hypervisors.length} hypervisors up, ${tunnels} tunnel ports, ` +
    `${state.vms.length} VMs — refreshed ${new Date().toLocaleTimeString()}`;
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

function showDown(message) {
  const banner = document.getElementById("banner");
  banner.textContent = message;
  banner.hidden = false;
  document.body.classList.add("lab-down");
  page.down = message;
}

async function refresh() {
  let r;
  try {
    r = await fetch("/api/state");
  } catch (e) {
    showDown(`The web server does not answer (${e}); is 'tunnelnet web' still running?`);
    return;
  }
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (r.ok && body) {
    document.getElementById("banner").hidden = true;
    document.body.classList.remove("lab-down");
    page.down = null;
    applyState(body);
    if (page.flowsOf) showFlows(page.flowsOf.host, page.flowsOf.bridge);
  } else {
    showDown((body && body.detail) || `The lab does not answer (HTTP ${r.status}).`);
  }
}

// -- the trace ----------------------------------------------------------------------------

// The visits on the way to the destination: the one that delivered it and its ancestors.
// Every other visit carries a copy the flood made.
function wayOf(j) {
  const visits = j.visits.filter(v => !v.hypothetical);
  const byId = Object.fromEntries(visits.map(v => [v.id, v]));
  const way = new Set();
  const last = visits.find(v => v.exits.some(e => e.kind === "vm" && e.vm === j.dst.name &&
    j.outcome.ends.some(end => end.vm === j.dst.name && end.what === "delivered" &&
                                !end.hypothetical)));
  for (let v = last; v; v = v.parent === null ? null : byId[v.parent]) way.add(v.id);
  if (!last) visits.forEach(v => way.add(v.id));  // not delivered: everything it did
  return way;
}

// The path as cytoscape element ids, in the order the packet meets them; each entry also
// says which visit (bridge block of the side panel) it belongs to and whether it is on the
// way to the destination.
function pathOf(j) {
  const out = [];
  const visits = j.visits.filter(v => !v.hypothetical);
  const byId = Object.fromEntries(visits.map(v => [v.id, v]));
  const way = wayOf(j);
  const vmAt = (host, port) => (page.state.vms.find(v => v.hypervisor === host &&
                                                        v.port === port) || {}).name;
  visits.forEach(v => {
    const on = way.has(v.id);
    const hop = (id, extra = {}) => out.push({ id, visit: v.id, on, ...extra });
    const parent = v.parent === null ? null : byId[v.parent];
    if (parent === null || parent === undefined) {
      const vm = vmAt(v.host, v.in_port);
      if (vm) { hop(`vm:${vm}`); hop(`vnic:${vm}`); }
    } else if (parent.host === v.host) {
      const tun = [parent.bridge, v.bridge].includes("br-tun");
      hop(tun ? `patch:${v.host}` : `phypatch:${v.host}`);
    } else if (parent.bridge !== "br-tun" || v.bridge !== "br-tun") {
      hop(physicalId(parent.host, v.host));  // over the physical network, no tunnel
    } else {
      const exit = parent.exits.find(e => e.next_visit === v.id);
      const enc = exit && exit.encap !== null ? j.encapsulation[exit.encap] : null;
      // the tunnel it took; without its encapsulation, whichever joins the two hosts
      const any = cy.edges(".tunnel").filter(e => tunnelId(parent.host, v.host, e.data("kind"))
                                             === e.id());
      hop(enc ? tunnelId(parent.host, v.host, enc.type) : (any.nonempty() ? any[0].id() : ""));
    }
    hop(`br:${v.host}:${v.bridge}`, { dropped: v.drop || v.exits.length === 0 });
    v.exits.filter(e => e.kind === "vm").forEach(e => {
      const dest = e.vm === j.dst.name && way.has(v.id) && j.outcome.delivered;
      const vmOn = dest || (e.vm === j.src.name && on);
      out.push({ id: `vnic:${e.vm}`, visit: v.id, on: vmOn },
               { id: `vm:${e.vm}`, visit: v.id, on: vmOn,
                 mark: dest ? "destination" : e.vm === j.src.name ? null : "discarded" });
    });
  });
  return out;
}

function renderOutcome(j) {
  const box = document.getElementById("outcome");
  box.hidden = false;
  box.className = j.outcome.delivered ? "delivered" : "dropped";
  document.getElementById("summary").textContent = j.outcome.summary;
  const words = { delivered: "✓ delivered", answered: "✓ answered", flooded: "✗ flooded copy",
                  discarded: "✗ copy discarded", dropped: "✗ dropped", lost: "✗ lost" };
  document.getElementById("ends").innerHTML = j.outcome.ends.map(e =>
    `<li class="${esc(e.what)}" data-what="${esc(e.what)}" data-vm="${esc(e.vm || "")}">` +
    `${e.hypothetical ? "what if: " : ""}${words[e.what] || esc(e.what)}` +
    `${e.vm ? ` ${esc(e.vm)}` : ""} (${esc(e.host)} ${esc(e.bridge)}): ${esc(e.reason)}</li>`)
    .join("");
}

function renderSteps(j) {
  const box = document.getElementById("steps");
  box.innerHTML = "";
  const way = wayOf(j);
  j.visits.forEach(v => {
    const sec = document.createElement("section");
    const copy = !v.hypothetical && !way.has(v.id);
    sec.className = "visit" + (v.hypothetical ? " hypothetical shown" : "") +
                    (copy ? " copy" : "");
    sec.dataset.visit = v.id;
    sec.dataset.host = v.host;
    sec.dataset.bridge = v.bridge;
    sec.dataset.hypothetical = v.hypothetical;
    let html = `<h3>${v.hypothetical ? "What if: " : ""}${esc(v.host)} ${esc(v.bridge)}` +
               ` <small>in_port ${esc(v.in_port)}</small>` +
               `${copy ? ' <span class="role">(a flooded copy)</span>' : ""}</h3>` +
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

function clearTrace() {
  cy.elements().removeClass("onpath current dropped whatif visited copy destination discarded");
  cy.nodes(".vm").forEach(n => { n.data("mark", null); });
}

function animate(j) {
  if (page.animating) clearInterval(page.animating);
  clearTrace();
  const path = pathOf(j);
  page.path = [];
  page.marks = { destination: null, discarded: [], dropped: [] };
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
    el.addClass(`visited current ${hop.on ? "onpath" : "copy"}`);
    if (hop.dropped) { el.addClass("dropped"); page.marks.dropped.push(hop.id); }
    if (hop.mark === "destination") {
      el.addClass("destination");
      el.data("mark", "destination");
      page.marks.destination = hop.id;
    } else if (hop.mark === "discarded") {
      el.addClass("discarded");
      el.data("mark", "discarded");
      page.marks.discarded.push(hop.id);
    }
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
  let r;
  let body;
  try {
    r = await fetch(`/api/trace?src=${encodeURIComponent(src)}&dst=` +
                    `${encodeURIComponent(dst)}&proto=${proto}`);
    body = await r.json();
  } catch (e) {
    status.dataset.state = "error";
    status.textContent = `no answer: ${e}`;
    return;
  }
  if (!r.ok) {
    status.dataset.state = "error";
    status.textContent = body.detail || "error";
    if (body.lab_down) showDown(body.detail);
    return;
  }
  page.trace = body;
  renderOutcome(body);
  renderSteps(body);
  renderLegend(page.state, page.colours);
  animate(body);
}

// -- a bridge's flow table ----------------------------------------------------------------

async function showFlows(host, bridge) {
  const r = await fetch(`/api/flows?host=${encodeURIComponent(host)}&bridge=${bridge}`);
  const title = document.getElementById("flows-title");
  const pre = document.getElementById("flows");
  title.hidden = pre.hidden = false;
  const note = page.state && page.state.lab && page.state.lab.counters_note;
  title.textContent = `${host} ${bridge}: dump-flows` + (note ? ` (${note})` : "");
  if (!r.ok) { pre.textContent = (await r.json()).detail; return; }
  // read the whole answer before touching the table: a live refresh redraws it while a
  // reader (or a test) looks at it, and it must never be seen empty in between
  const lines = (await r.json()).flows;
  // an answer for a bridge no longer selected (a slow refresh overtaken by a click) is dropped
  if (page.flowsOf && (page.flowsOf.host !== host || page.flowsOf.bridge !== bridge)) return;
  // the flows the last trace matched on this bridge are highlighted; the trace is read now,
  // after the wait, so an answer that started before a trace finished still shows its hits
  const hits = new Set();
  if (page.trace) {
    page.trace.visits.filter(v => v.host === host && v.bridge === bridge && !v.hypothetical)
      .forEach(v => v.steps.forEach(st => hits.add(`${st.table}|${st.priority}|${st.match}`)));
  }
  pre.replaceChildren(...lines.map(line => {
    const m = line.match(/table=(\d+), .*?priority=(\d+),?(\S*) actions=/);
    const div = document.createElement("div");
    div.textContent = line;
    if (m && hits.has(`${m[1]}|${m[2]}|${m[3]}`)) div.className = "hit";
    return div;
  }));
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
