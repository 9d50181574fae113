/*!
 * shopmind.js — send shopper events from a shop page to Shopmind. No dependencies, ~2 KB minified.
 *
 *   <script src="https://shopmind.example.com/static/shopmind.js"></script>
 *   <script>
 *     Shopmind.init({endpoint: "https://shopmind.example.com", key: "sm_…track key…", userId: "c-42"});
 *     Shopmind.track("view", "sku-123");
 *     Shopmind.track("add_to_cart", "sku-123", {value: 2, price: 19.9});
 *     Shopmind.track("click", "sku-456", {recommendationId: rec.recommendation_id});
 *   </script>
 *
 * - The key is visible to anyone who opens the page: create it with `shopmind keys create --scope track`
 *   (it may only post browser events, nothing else), never `ingest`, `read` or `admin`, and list the
 *   shop's origin in SHOPMIND_CORS_ORIGINS on the server.
 * - Purchases and ratings are not sent from the page: anyone could forge them with the page's key, and
 *   they feed revenue, propensity and customer value. The shop's backend posts them to /v1/events with
 *   an `ingest` key (the server refuses them from a track key with 403); track() throws for them.
 * - Events are queued and sent in batches (every `flushMs`, at `maxBatch` events, and when the page is
 *   hidden or left) with fetch(..., {keepalive: true}), which survives page unloads like sendBeacon but,
 *   unlike sendBeacon, can send the key in the X-API-Key header — so the key never lands in URLs or
 *   server access logs.
 * - Every event gets a random event_id, so a batch re-sent after a network error is stored once.
 * - No userId given: an anonymous id is kept in localStorage ("shopmind_uid"). After login call
 *   Shopmind.identify(customerId); the shop's backend can merge the two histories with
 *   POST /v1/users/{customerId}/merge {"from_user_id": Shopmind.anonymousId()}.
 * - A session id lives in sessionStorage ("shopmind_sid"): one per tab until it is closed.
 * - Timestamps are left to the server (receipt time), so a wrong client clock cannot get events rejected.
 */
(function (global) {
  "use strict";

  // What a track key may post (app.events.schemas.BROWSER_EVENT_TYPES); one refused event would cost
  // its whole batch a 403, so the others are stopped here, where the page's developer sees why.
  var TYPES = ["view", "click", "add_to_cart", "remove_from_cart", "like", "dislike", "bookmark"];
  var BACKEND_TYPES = ["purchase", "rating"];
  var MAX_QUEUE = 500; // events kept while the server is unreachable; the oldest are dropped first
  var config = null;
  var queue = [];
  var timer = null;
  var inflight = null; // the request being sent, if any (one at a time keeps events in order)
  var memo = {};

  function randomId() {
    var c = global.crypto;
    if (c && typeof c.randomUUID === "function") return c.randomUUID().replace(/-/g, "");
    var out = "";
    for (var i = 0; i < 32; i++) out += Math.floor(Math.random() * 16).toString(16);
    return out;
  }

  function stored(storageName, key) {
    // Storage can be disabled or throw (private mode, sandboxed iframes): then the id lives as long
    // as the page.
    if (memo[key]) return memo[key];
    var value = null;
    try {
      var storage = global[storageName];
      value = storage.getItem(key);
      if (!value) {
        value = randomId();
        storage.setItem(key, value);
      }
    } catch (e) {
      value = value || randomId();
    }
    memo[key] = value;
    return value;
  }

  function schedule() {
    if (timer === null) timer = setTimeout(flush, config.flushMs);
  }

  function flush() {
    if (timer !== null) {
      clearTimeout(timer);
      timer = null;
    }
    if (inflight) return inflight;
    if (!config || queue.length === 0) return Promise.resolve();
    var batch = queue.splice(0, config.maxBatch);
    inflight = global.fetch(config.endpoint + "/v1/events", {
      method: "POST",
      keepalive: true, // the body stays small (maxBatch events) to fit keepalive's 64 KB budget
      mode: "cors",
      credentials: "omit",
      headers: {"Content-Type": "application/json", "X-API-Key": config.key},
      body: JSON.stringify({events: batch}),
    }).then(function (response) {
      // 5xx and 429 are worth retrying (event ids make it safe); 4xx would fail again: drop them.
      if (response.status >= 500 || response.status === 429) requeue(batch);
    }, function () {
      requeue(batch);
    }).then(function () {
      inflight = null;
      if (queue.length > 0) schedule();
    });
    return inflight;
  }

  function requeue(batch) {
    queue = batch.concat(queue).slice(-MAX_QUEUE);
  }

  var Shopmind = {
    /**
     * init({endpoint, key, userId?, flushMs = 2000, maxBatch = 20})
     * endpoint: the Shopmind base URL (no trailing /v1); key: a track-scope API key.
     */
    init: function (options) {
      if (!options || !options.endpoint || !options.key) {
        throw new Error("Shopmind.init needs {endpoint, key}");
      }
      config = {
        endpoint: String(options.endpoint).replace(/\/+$/, ""),
        key: String(options.key),
        userId: options.userId ? String(options.userId) : null,
        flushMs: options.flushMs > 0 ? options.flushMs : 2000,
        maxBatch: options.maxBatch > 0 ? Math.min(options.maxBatch, 100) : 20,
      };
      if (global.document && global.addEventListener) {
        global.document.addEventListener("visibilitychange", function () {
          if (global.document.visibilityState === "hidden") flush();
        });
        global.addEventListener("pagehide", flush);
      }
      return Shopmind;
    },

    /** The logged-in customer's id from now on (null: back to the anonymous id). */
    identify: function (userId) {
      if (!config) throw new Error("call Shopmind.init first");
      config.userId = userId ? String(userId) : null;
    },

    /**
     * track(type, itemId, extra?) — type: view, click, add_to_cart, remove_from_cart, like, dislike,
     * bookmark. extra: {value, price, recommendationId, properties, eventId}.
     */
    track: function (type, itemId, extra) {
      if (!config) throw new Error("call Shopmind.init first");
      if (BACKEND_TYPES.indexOf(type) >= 0) {
        throw new Error("Shopmind: send '" + type + "' events from the shop's backend with an ingest key, " +
          "not from the page");
      }
      if (TYPES.indexOf(type) < 0) throw new Error("unknown Shopmind event type: " + type);
      extra = extra || {};
      var event = {
        event_id: extra.eventId ? String(extra.eventId) : randomId(),
        user_id: Shopmind.userId(),
        type: type,
        session_id: Shopmind.sessionId(),
      };
      if (itemId !== undefined && itemId !== null) event.item_id = String(itemId);
      if (typeof extra.value === "number") event.value = extra.value;
      if (typeof extra.price === "number") event.price = extra.price;
      var rec = extra.recommendationId || extra.recommendation_id;
      if (rec) event.recommendation_id = String(rec);
      if (extra.properties) event.properties = extra.properties;
      queue.push(event);
      if (queue.length > MAX_QUEUE) queue.shift();
      if (queue.length >= config.maxBatch) flush();
      else schedule();
      return event.event_id;
    },

    /** Send what is queued now; resolves when the request has finished (successfully or not). */
    flush: flush,

    userId: function () {
      return (config && config.userId) || Shopmind.anonymousId();
    },
    anonymousId: function () {
      return stored("localStorage", "shopmind_uid");
    },
    sessionId: function () {
      return stored("sessionStorage", "shopmind_sid");
    },
  };

  global.Shopmind = Shopmind;
})(typeof window !== "undefined" ? window : globalThis);
