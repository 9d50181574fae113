/* Shopmind operator dashboard: draws the charts from the page's embedded JSON and runs the try-it box.
   Loaded after chart.umd.min.js (window.Chart). Text from the API is inserted with textContent only. */
(function () {
  "use strict";

  var PALETTE = ["#3b5bdb", "#12b886", "#f59f00", "#e64980", "#7950f2", "#15aabf", "#fa5252", "#82c91e", "#868e96"];
  var TYPE_LABELS = { add_to_cart: "cart", remove_from_cart: "cart removal" };
  var data = JSON.parse(document.getElementById("dashboard-data").textContent);

  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.color = "#6b7486";
  Chart.defaults.borderColor = "#e3e7ef";
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.plugins.legend.labels.boxWidth = 12;

  function label(type) { return TYPE_LABELS[type] || type.replace(/_/g, " "); }

  function draw(id, config) {
    var canvas = document.getElementById(id);
    if (canvas) { new Chart(canvas, config); }
  }

  // Events per day, stacked by type.
  var ev = data.events;
  draw("chart-events", {
    type: "bar",
    data: {
      labels: ev.days.map(function (d) { return d.slice(5); }),
      datasets: ev.types.map(function (t, k) {
        return { label: label(t), data: ev.counts[t], backgroundColor: PALETTE[k % PALETTE.length], stack: "events" };
      })
    },
    options: {
      scales: { x: { stacked: true, grid: { display: false } }, y: { stacked: true, beginAtZero: true } },
      plugins: { legend: { position: "bottom" }, tooltip: { mode: "index", intersect: false } }
    }
  });

  // Offline metrics per strategy.
  var offline = data.model.offline;
  var strategies = Object.keys(offline);
  draw("chart-offline", {
    type: "bar",
    data: {
      labels: strategies,
      datasets: ["ndcg@10", "recall@20", "precision@10"].map(function (m, k) {
        return { label: m, data: strategies.map(function (s) { return offline[s][m]; }), backgroundColor: PALETTE[k] };
      })
    },
    options: { scales: { y: { beginAtZero: true }, x: { grid: { display: false } } }, plugins: { legend: { position: "bottom" } } }
  });

  // What recommendations earned: clicks, carts, purchases per strategy.
  var earned = data.earned;
  draw("chart-earned", {
    type: "bar",
    data: {
      labels: earned.strategies,
      datasets: earned.types.map(function (t, k) {
        return { label: label(t) + "s", data: earned.counts[t], backgroundColor: PALETTE[k] };
      })
    },
    options: { scales: { y: { beginAtZero: true }, x: { grid: { display: false } } }, plugins: { legend: { position: "bottom" } } }
  });

  // Propensity histogram: round bins up to the highest probability (see service.propensity_distribution).
  function edgePct(e) { return String(Math.round(e * 1000) / 10); }
  var prop = data.propensity;
  draw("chart-propensity", {
    type: "bar",
    data: {
      labels: prop.counts.map(function (_, k) {
        return edgePct(prop.edges[k]) + "–" + edgePct(prop.edges[k + 1]) + "%";
      }),
      datasets: [{ label: "shoppers", data: prop.counts, backgroundColor: PALETTE[0], barPercentage: 1, categoryPercentage: 0.92 }]
    },
    options: {
      scales: { y: { beginAtZero: true, title: { display: true, text: "shoppers" } },
                x: { grid: { display: false }, title: { display: true, text: "probability of a " + prop.target + " within the horizon" } } },
      plugins: { legend: { display: false } }
    }
  });

  // Try it.
  var form = document.getElementById("try-form");
  var input = document.getElementById("try-user");
  var status = document.getElementById("try-status");
  var result = document.getElementById("try-result");

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function pct(p) { return (p * 100).toFixed(1) + "%"; }

  function render(body) {
    var recs = document.getElementById("try-recs");
    recs.replaceChildren();
    body.recommendations.items.forEach(function (item) {
      var li = el("li", "rec");
      li.appendChild(el("span", "score", item.score.toFixed(3)));
      li.appendChild(el("div", "title", item.title || item.item_id));
      li.appendChild(el("div", "reason", item.reason));
      recs.appendChild(li);
    });
    if (!body.recommendations.items.length) { recs.appendChild(el("li", "muted", "No eligible items.")); }
    document.getElementById("try-strategy").textContent = body.recommendations.strategy;

    var box = document.getElementById("try-propensity");
    var factors = document.getElementById("try-factors");
    box.replaceChildren();
    factors.replaceChildren();
    var p = body.propensity;
    if (!p) {
      box.appendChild(el("p", "muted", body.propensity_note || "No propensity model yet."));
    } else {
      var line = el("div");
      line.appendChild(el("span", "big", pct(p.probability)));
      line.appendChild(el("span", "badge tier", p.tier));
      box.appendChild(line);
      box.appendChild(el("div", "muted small", p.scored
        ? "within " + p.horizon_days + " days · at or above " + pct(p.percentile) + " of shoppers"
        : "not scored at the last rebuild: the base rate"));
      p.top_factors.forEach(function (f) {
        var li = el("li");
        li.appendChild(el("span", "dir-" + f.direction, f.direction === "up" ? "▲ " : "▼ "));
        li.appendChild(document.createTextNode(f.text));
        factors.appendChild(li);
      });
    }
    result.hidden = false;
    result.setAttribute("data-loaded", body.user_id);
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var userId = input.value.trim();
    if (!userId) { return; }
    status.textContent = "Loading…";
    fetch("/dashboard/api/try?user_id=" + encodeURIComponent(userId), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) { throw new Error(typeof body.detail === "string" ? body.detail : (body.error || response.status)); }
          return body;
        });
      })
      .then(function (body) { render(body); status.textContent = ""; })
      .catch(function (err) { status.textContent = "Error: " + err.message; });
  });
})();
