-- redis-ha: HAProxy's own safeguard for when it is cut off (deploy/haproxy/haproxy.cfg loads it).
--
-- The reloader decides who is ready, but an HAProxy on a node cut off from the rest can no longer
-- be driven, and keeps routing writes to whatever master it last had: on the master's own node
-- that old master acknowledges writes until its replicas' lag exceeds min-replicas-max-lag, and
-- every one of them is lost once it rejoins as a replica. So the HAProxy watches the Redis nodes
-- itself (backend REDIS_HA_QUORUM_BACKEND, a PING check each, no password needed: -NOAUTH is an
-- answer) and, while no more than half of them answer, it is on the minority side: new
-- connections to the write frontend are refused and the write backend's sessions are shut, so
-- its clients get errors instead of writes that will be lost. A majority answering again routes
-- as the reloader last said; the read endpoint is left alone (stale reads are allowed there).
--
-- The rule is the same as the masters' own (min-replicas-to-write 1: the master and a replica,
-- two of three) but does not wait for the replication lag, only for the checks (haproxy.cfg:
-- about 1 s on a cut link).

local quorum_backend = os.getenv("REDIS_HA_QUORUM_BACKEND") or "redis_quorum"
local guarded_backend = os.getenv("REDIS_HA_BACKEND") or "redis"
-- How often the verdict is taken and, while cut off, sessions are shut (new sessions of a
-- connection accepted just before the verdict included).
local period_ms = 200

local cut_off = false

-- Up (or going down, "UP 1/2") servers of a backend, and how many it has.
local function answering(backend)
    local up, total = 0, 0
    for _, server in pairs(backend.servers) do
        total = total + 1
        local status = server:get_stats()["status"] or ""
        if status:sub(1, 2) == "UP" then
            up = up + 1
        end
    end
    return up, total
end

-- Cut off: no strict majority of the Redis nodes answers this HAProxy.
local function is_cut_off(up, total)
    return up * 2 <= total
end

core.register_init(function()
    for _, name in ipairs({ quorum_backend, guarded_backend }) do
        if core.backends[name] == nil then
            error("redis-ha majority guard: no backend named " .. name
                .. " (REDIS_HA_QUORUM_BACKEND / REDIS_HA_BACKEND)")
        end
    end
end)

core.register_task(function()
    local quorum = core.backends[quorum_backend]
    local guarded = core.backends[guarded_backend]
    while true do
        local up, total = answering(quorum)
        local now = is_cut_off(up, total)
        if now ~= cut_off then
            cut_off = now
            if cut_off then
                core.Warning(string.format("redis-ha majority guard: %d of %d Redis nodes answer: "
                    .. "cut off, refusing writes and closing the write sessions", up, total))
            else
                core.Warning(string.format("redis-ha majority guard: %d of %d Redis nodes answer: "
                    .. "routing writes again", up, total))
            end
        end
        if cut_off then
            for _, server in pairs(guarded.servers) do
                server:shut_sess()
            end
        end
        core.msleep(period_ms)
    end
end)

-- For the write frontend: `tcp-request content reject if { lua.redis_ha_cut_off -m bool }`.
core.register_fetches("redis_ha_cut_off", function(_)
    return cut_off
end)
