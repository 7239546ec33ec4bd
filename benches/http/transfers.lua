-- wrk script: each request one single-phase transfer POST /v1/transfers with its own id.
-- Usage (see docs/PERFORMANCE.md, "HTTP API"):
--   TOKEN=<payments token> ID_BASE=1000000 wrk -t2 -c256 -d8s --latency \
--       -s benches/http/transfers.lua http://127.0.0.1:7780
-- Accounts DEBIT (default 1) and CREDIT (default 2) must exist on ledger LEDGER (default 1).
-- Ids are ID_BASE + thread * 2^40 + n, so threads never collide; use a new ID_BASE for each
-- run to create new transfers instead of answering `exists`.

local token = os.getenv("TOKEN") or ""
local id_base = tonumber(os.getenv("ID_BASE") or "1000000")
local debit = os.getenv("DEBIT") or "1"
local credit = os.getenv("CREDIT") or "2"
local ledger = os.getenv("LEDGER") or "1"
local threads = {}
local thread_count = 0

function setup(thread)
    thread:set("thread_index", thread_count)
    thread_count = thread_count + 1
    table.insert(threads, thread)
end

function init(args)
    counter = 0
    wrk.method = "POST"
    wrk.path = "/v1/transfers"
    wrk.headers["Authorization"] = "Bearer " .. token
    wrk.headers["Content-Type"] = "application/json"
end

function request()
    counter = counter + 1
    local id = id_base + thread_index * 1099511627776 + counter
    local body = string.format(
        '{"id":"%d","debit_account_id":"%s","credit_account_id":"%s","amount":"1","ledger":%s,"code":1}',
        id, debit, credit, ledger)
    return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
    if status ~= 200 and status ~= 201 then
        failures = (failures or 0) + 1
        if failures <= 3 then
            io.stderr:write("status " .. status .. ": " .. body .. "\n")
        end
    end
end
