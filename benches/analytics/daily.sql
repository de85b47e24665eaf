-- (a) Per device, probe and UTC day: mean and highest temperature.
SELECT device_id, probe_id, CAST(event_time AS DATE) AS day,
       avg(temperature_c) AS mean_c, max(temperature_c) AS max_c,
       count(temperature_c) AS readings
FROM probe_readings
GROUP BY device_id, probe_id, CAST(event_time AS DATE)
ORDER BY device_id, probe_id, day
