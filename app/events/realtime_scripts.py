"""The Lua scripts of ingest's real-time update (`events.realtime`).

A batch's real-time writes are script calls, each on the keys of one Redis Cluster slot: one call per
shopper (`USER_SCRIPT`, their `{u:ID}` keys) and one for the catalog's live state (`LIVE_SCRIPT`, the
`{live}` keys). On a cluster they are pipelined, each node getting its share (`store.batch`). On a
single Redis the same script bodies run inside one call of `BATCH_SCRIPT`: a thousand separate calls
cost the API about half again as much CPU per event as one (their packing and a thousand replies
read in Python), measured with `bench/ingest.py`. One command per key rather than per event, and a
history list is trimmed only once it outgrows the cap.
"""

from __future__ import annotations

import hashlib

REBASE_AFTER = 64  # half-lives: scores stay below 2^64 × the events' weights

# KEYS: history, seen, purchased. ARGV: the cap, n, n history entries (oldest first), m, m items seen,
# then the items bought.
USER_SCRIPT = r"""
local call, unpack, min = redis.call, unpack, math.min
local function many(command, key, first, last)
  for s = first, last, 256 do call(command, key, unpack(ARGV, s, min(last, s + 255))) end
end
local cap, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local length = 0
for s = 3, 2 + n, 256 do length = call('LPUSH', KEYS[1], unpack(ARGV, s, min(2 + n, s + 255))) end
if length > cap then call('LTRIM', KEYS[1], 0, cap - 1) end
local first = 4 + n
local last_seen = first + tonumber(ARGV[3 + n]) - 1
many('SADD', KEYS[2], first, last_seen)
many('SADD', KEYS[3], last_seen + 1, #ARGV)
return 0
"""

# KEYS: item metadata, the overall popularity set, the set of category names, T0, the set of
# recommendation strategies, all tagged `{live}`. A category's set and a strategy's counters are named
# by the key prefixes in ARGV (`Keys.popularity_category("")`, `Keys.recommendation_stats("")`): they
# carry the same tag, so they are on the slot KEYS route the call to, and only Redis knows an item's
# categories. ARGV[1]: one JSON array read in order, sections prefixed by their counts.
# Popularity per category is applied here because the item's categories live in its Redis metadata;
# an item without metadata is deleted (or unknown) and earns no popularity. Metadata without categories
# (what ingest creates) is told by its first bytes rather than decoded.
# Scores stay text (one ZINCRBY per item and category): a ZMSCORE and a ZADD per key measured dearer,
# their number-text conversions costing more than the commands they save.
LIVE_SCRIPT = r"""
local a = cjson.decode(ARGV[1])
local call, unpack, min = redis.call, unpack, math.min
local meta_key, pop_key, categories_key, epoch_key, strategies_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local category_prefix, stats_prefix = ARGV[2], ARGV[3]
local new_meta, n = a[1], a[2]
for j = 3, 2 + n do call('HSETNX', meta_key, a[j], new_meta) end
local i = 3 + n
local scale = 1
if a[i + 3] > 0 then
  -- the increments are relative to the batch's own time (a[i]); scale them to the stored T0
  local base, per_second = a[i], a[i + 1]
  local t0 = tonumber(call('GET', epoch_key)) or a[i + 2]
  local exponent = (tonumber(base) - t0) * per_second
  if exponent > REBASE_AFTER then
    local factor = 2 ^ -exponent
    call('ZUNIONSTORE', pop_key, 1, pop_key, 'WEIGHTS', factor)
    for _, category in ipairs(call('SMEMBERS', categories_key)) do
      local key = category_prefix .. category
      call('ZUNIONSTORE', key, 1, key, 'WEIGHTS', factor)
    end
    call('SET', epoch_key, base)
  elseif exponent ~= 0 then
    scale = 2 ^ exponent
  end
end
local pairs_end = i + 3 + 2 * a[i + 3]
local categories = {}
for first = i + 4, pairs_end, 512 do
  local ids = {}
  for j = first, min(pairs_end, first + 511), 2 do ids[#ids + 1] = a[j] end
  local metas = call('HMGET', meta_key, unpack(ids))
  for k, meta in ipairs(metas) do
    if meta then
      local item, inc = ids[k], a[first + 2 * k - 1]
      if scale ~= 1 then inc = tonumber(inc) * scale end
      call('ZINCRBY', pop_key, inc, item)
      if string.sub(meta, 1, 7) ~= '{"c":[]' then
        local item_categories = cjson.decode(meta)['c']
        if type(item_categories) == 'table' then
          for _, category in ipairs(item_categories) do
            call('ZINCRBY', category_prefix .. category, inc, item)
            categories[category] = true
          end
        end
      end
    end
  end
end
i = pairs_end + 1
local named = {}
for category in pairs(categories) do named[#named + 1] = category end
for first = 1, #named, 256 do
  call('SADD', categories_key, unpack(named, first, min(#named, first + 255)))
end
for j = i + 1, i + 3 * a[i], 3 do
  call('SADD', strategies_key, a[j])
  call('HINCRBY', stats_prefix .. a[j], a[j + 1], a[j + 2])
end
return #a
""".replace("REBASE_AFTER", str(REBASE_AFTER))


_USER_BODY = USER_SCRIPT.strip()
_LIVE_BODY = LIVE_SCRIPT.strip()

# A single Redis has no slots: every call of a batch in one script, each made by the body it runs on a
# cluster (as a function whose KEYS and ARGV are its parameters). ARGV[1]: a JSON array of calls, each
# [KEYS, ARGV]: the shoppers' calls, then the live calls (one per live bucket); ARGV[2]: how many
# shoppers' calls.
BATCH_SCRIPT = f"""
local function user_call(KEYS, ARGV)
{_USER_BODY}
end
local function live_call(KEYS, ARGV)
{_LIVE_BODY}
end
local calls, n_users = cjson.decode(ARGV[1]), tonumber(ARGV[2])
for k = 1, n_users do user_call(calls[k][1], calls[k][2]) end
for k = n_users + 1, #calls do live_call(calls[k][1], calls[k][2]) end
return #calls
"""

SCRIPTS = {hashlib.sha1(script.encode()).hexdigest(): script for script in (USER_SCRIPT, LIVE_SCRIPT, BATCH_SCRIPT)}
USER_SHA, LIVE_SHA, BATCH_SHA = SCRIPTS  # EVALSHA: 40 bytes a call, not the script
