-- batch_sqlite.lua - a batch handler that writes each batch of orders to
-- SQLite in one transaction (README, "Batch handlers").  Run it with
--   luka run config/examples/batch_sqlite.lua --brokers localhost:9092
-- and orders.db appears next to this file.
local luka = require "luka"

local db = luka.sqlite("orders.db")
assert(db:exec([[
  CREATE TABLE IF NOT EXISTS orders (
    id       TEXT PRIMARY KEY,
    customer TEXT NOT NULL,
    total    REAL NOT NULL,
    at       INTEGER NOT NULL
  )]]))

luka.consumer "orders-to-sqlite" {
  topics = { "orders" },
  -- A new group starts from the topic's beginning.
  config = { ["auto.offset.reset"] = "earliest" },
  batch = { max = 200, wait = "100ms" },
  retry = { delayed = { initial = "1s", attempts = 3 } },
  error_channel = "orders.dlt",
  handle_batch = function(batch)
    -- One transaction per batch: all its orders are stored, or none.
    local ok, err = db:transaction(function(tx)
      for _, m in ipairs(batch) do
        -- An order seen before (a redelivery) keeps its first row.
        tx:query("INSERT INTO orders (id, customer, total, at) VALUES (?, ?, ?, ?)"
          .. " ON CONFLICT (id) DO NOTHING", m.msg.id, m.msg.customer, m.msg.total, m.meta.timestamp)
      end
    end)
    -- Raising fails the batch: it is retried as a batch, then each of its
    -- messages goes to orders.dlt.
    if not ok then error(err) end
  end,
}
