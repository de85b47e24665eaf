-- (c) One device's readings over one hour (the cook's second), in time order.
SELECT device_id, probe_id, event_time, temperature_c
FROM probe_readings
WHERE device_id = 'sim-1'
  AND event_time >= '2026-09-21T19:00:00Z' AND event_time < '2026-09-21T20:00:00Z'
ORDER BY event_time, probe_id
