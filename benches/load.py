#!/usr/bin/env python3
"""Bounded load against a running `st2v serve`: N clients submit jobs for T seconds, each
waiting for its job to end before submitting the next, then the script stops by itself and
reports throughput, latency (submit -> completed) p50/p95/p99, time to first frame, and
errors (429 refusals apart). Standard library only.

    st2v serve --models models/tiny --listen 127.0.0.1:8080 --data /tmp/st2v-load &
    python3 benches/load.py --url http://127.0.0.1:8080 --clients 4 --seconds 60 --json load.json
"""

import argparse
import json
import statistics
import threading
import time
import urllib.error
import urllib.request


def request(method, url, body=None, key=None, timeout=30):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    if key:
        req.add_header("authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def percentile(values, q):
    if not values:
        return None
    ordered = sorted(values)
    rank = q / 100 * (len(ordered) - 1)
    low, high = int(rank), min(int(rank) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def client(args, stop_at, results, lock):
    body = {"prompt": args.prompt, "frames": args.frames, "steps": args.steps,
            "stage1_steps": args.steps, "enhance_steps": args.steps, "enhance": not args.no_enhance}
    while time.monotonic() < stop_at:
        started = time.monotonic()
        status, job = request("POST", f"{args.url}/v1/videos", body, args.api_key)
        if status == 429:
            with lock:
                results["rejected"] += 1
            time.sleep(1.0)
            continue
        if status != 202:
            with lock:
                results["errors"].append(f"POST {status}: {job}")
            time.sleep(1.0)
            continue
        url = f"{args.url}{job['urls']['self']}"
        while True:
            status, record = request("GET", url, key=args.api_key)
            if status != 200 or record["status"] in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.05)
        with lock:
            if status == 200 and record["status"] == "completed":
                results["latency"].append(time.monotonic() - started)
                results["ttff"].append(record.get("time_to_first_frame_s"))
                results["frames"] += record["progress"]["final_frames"]
            else:
                results["errors"].append(f"{record.get('status')}: {record.get('error')}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--no-enhance", action="store_true")
    parser.add_argument("--prompt", default="a cat running on the street")
    parser.add_argument("--api-key")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    results = {"latency": [], "ttff": [], "frames": 0, "rejected": 0, "errors": []}
    lock = threading.Lock()
    begin = time.monotonic()
    stop_at = begin + args.seconds
    threads = [threading.Thread(target=client, args=(args, stop_at, results, lock))
               for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - begin
    latency, ttff = results["latency"], [t for t in results["ttff"] if t is not None]
    report = {
        "url": args.url, "clients": args.clients, "seconds": round(elapsed, 2),
        "job": {"frames": args.frames, "steps": args.steps, "enhance": not args.no_enhance},
        "completed": len(latency), "rejected_429": results["rejected"], "errors": len(results["errors"]),
        "jobs_per_minute": round(60 * len(latency) / elapsed, 2),
        "frames_per_second": round(results["frames"] / elapsed, 2),
        "latency_s": {f"p{q}": percentile(latency, q) and round(percentile(latency, q), 3) for q in (50, 95, 99)},
        "time_to_first_frame_s": {f"p{q}": percentile(ttff, q) and round(percentile(ttff, q), 3) for q in (50, 95, 99)},
        "mean_latency_s": round(statistics.mean(latency), 3) if latency else None,
        "error_samples": results["errors"][:5],
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as out:
            out.write(text + "\n")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
