"""The operator dashboard at `/dashboard`: events, models, earnings, propensity, top items, try-it.

`router.install_dashboard(app)` wires it in. Charts use Chart.js 4.6.1 (MIT), vendored unmodified from
the npm package `chart.js` as `static/chart.umd.min.js` (its licence header kept), served by the app
itself: the page needs no CDN and works offline.
"""
