// vigil console: the little script the pages need. Served as a file (the CSP allows
// no inline script). Everything works without it but the live updates.
"use strict";
(function () {
  var main = document.querySelector("main[data-poll]");
  if (!main) { return; }
  var url = main.getAttribute("data-poll");
  var seq = Number(main.getAttribute("data-seq") || "0");
  var status = main.getAttribute("data-status") || "";
  var FINAL = { succeeded: 1, failed: 1, cancelled: 1, timed_out: 1 };
  var timer = null;

  function setState(step, state, label) {
    var sel = '[data-step="' + (window.CSS && CSS.escape ? CSS.escape(step) : step) + '"]';
    document.querySelectorAll("svg.dag .node" + sel).forEach(function (g) {
      var cls = (g.getAttribute("class") || "").split(" ").filter(function (c) {
        return c.indexOf("s-") !== 0;
      });
      cls.push("s-" + state);
      g.setAttribute("class", cls.join(" "));
      g.setAttribute("data-state", state);
      var t = g.querySelector("text.state");
      if (t) { t.textContent = label; }
    });
    document.querySelectorAll("tr" + sel + " .state-cell").forEach(function (td) {
      td.textContent = label;
      td.className = "state-cell badge st-" + state;
    });
  }

  function addEvent(ev) {
    var list = document.getElementById("timeline");
    if (!list) { return; }
    var li = document.createElement("li");
    li.className = "k-" + ev.kind;
    var t = document.createElement("span");
    t.className = "dim small";
    t.textContent = ev.time + " ";
    li.appendChild(t);
    var b = document.createElement("strong");
    b.textContent = ev.kind.replace(/_/g, " ");
    li.appendChild(b);
    if (ev.step) { li.appendChild(document.createTextNode(" " + ev.step)); }
    if (ev.attempt > 1) { li.appendChild(document.createTextNode(" (attempt " + ev.attempt + ")")); }
    if (ev.detail) {
      var d = document.createElement("div");
      d.className = "small dim";
      d.textContent = ev.detail;
      li.appendChild(d);
    }
    list.appendChild(li);
  }

  function poll() {
    fetch(url + "?after=" + seq, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) {
        if (r.status === 401 || r.status === 403) { throw new Error("session"); }
        return r.json();
      })
      .then(function (s) {
        (s.steps || []).forEach(function (st) { setState(st.id, st.state, st.label); });
        (s.events || []).forEach(function (ev) { addEvent(ev); seq = Math.max(seq, ev.seq); });
        var badge = document.getElementById("exec-status");
        if (badge && s.status) {
          badge.textContent = s.status.replace(/_/g, " ");
          badge.className = "badge st-" + s.status;
        }
        main.setAttribute("data-live-status", s.status || "");
        if (s.status !== status) {
          var was = status;
          status = s.status;
          // A new wait shows its approval form; an end shows outputs: the page has them.
          if (was && (status === "awaiting_approval" || FINAL[status])) { location.reload(); return; }
        }
        if (!FINAL[status]) { timer = setTimeout(poll, 1000); }
      })
      .catch(function () { timer = setTimeout(poll, 3000); });
  }
  if (!FINAL[status]) { timer = setTimeout(poll, 1000); }
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && timer === null && !FINAL[status]) { poll(); }
  });
})();
