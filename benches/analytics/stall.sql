-- (b) Minutes in the stall per cook: the cook's start and end from its commands, each meat
-- probe's readings in between, the rate of rise over the last 30 readings (LAG), and the
-- time between readings summed where the meat is at 60–80 °C and rises slower than
-- 0.1 °C/min; per cook, the probe that stalled longest.
WITH cooks AS (
    SELECT s.device_id, s.cook_id, s.event_time AS started, e.event_time AS ended
    FROM cook_commands s
    JOIN cook_commands e
      ON e.device_id = s.device_id AND e.cook_id = s.cook_id AND e.event_type = 'CookEnded'
    WHERE s.event_type = 'CookStarted'
),
rates AS (
    SELECT c.cook_id, r.device_id, r.probe_id, r.temperature_c,
           EXTRACT(EPOCH FROM r.event_time)
             - EXTRACT(EPOCH FROM LAG(r.event_time) OVER w) AS step_s,
           (r.temperature_c - LAG(r.temperature_c, 30) OVER w) * 60.0
             / (EXTRACT(EPOCH FROM r.event_time)
                - EXTRACT(EPOCH FROM LAG(r.event_time, 30) OVER w)) AS rise_c_per_min
    FROM probe_readings r
    JOIN cooks c ON r.device_id = c.device_id
    WHERE r.probe_id <> 'pit' AND r.temperature_c IS NOT NULL
      AND r.event_time >= c.started AND r.event_time <= c.ended
    WINDOW w AS (PARTITION BY c.cook_id, r.probe_id ORDER BY r.event_time)
),
per_probe AS (
    SELECT cook_id, device_id, probe_id,
           sum(CASE WHEN temperature_c BETWEEN 60 AND 80 AND rise_c_per_min < 0.1
                    THEN step_s ELSE 0 END) / 60.0 AS stall_min
    FROM rates
    GROUP BY cook_id, device_id, probe_id
)
SELECT cook_id, device_id, max(stall_min) AS stall_min
FROM per_probe
GROUP BY cook_id, device_id
ORDER BY device_id, cook_id
