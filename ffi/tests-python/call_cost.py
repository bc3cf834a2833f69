"""The cost of one inventory line through the Python bindings (not a pytest test).

Same workload as `cargo run --release -p fieldsync-ffi --example call_cost`;
`scripts/call-cost.sh` runs it with the Rust and Kotlin harnesses.
Alone, after `scripts/bindings.sh --release`: python3 ffi/tests-python/call_cost.py [calls]
"""

import datetime
import statistics
import sys
import tempfile
import time

import conftest  # noqa: F401 - puts the bindings on sys.path
import fieldsync_ffi as fs


def report(name, times):
    print(f"{name}: median {statistics.median(times) * 1e6:.1f} µs, "
          f"mean {statistics.fmean(times) * 1e6:.1f} µs over {len(times)} calls")


def main(calls):
    with tempfile.TemporaryDirectory() as d:
        store = fs.FieldStore.open(f"{d}/bench.db", "rep-1", "phone-1")
        today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
        store.replace_reference_data_json(fs.demo_reference_data_json(7, today))
        shop = store.stores()[0]
        visit = store.create_ad_hoc_visit(shop.id, "tt-standard")
        store.check_in(visit, fs.GeoPoint(lat=shop.lat, lng=shop.lng))
        products = store.visit_checklist(visit).product_ids

        times = []
        for i in range(calls):
            line = fs.InventoryInput(shelf_qty=i % 17, facings=2)
            start = time.perf_counter()
            store.record_inventory(visit, products[i % len(products)], line)
            times.append(time.perf_counter() - start)
        report("record_inventory (Python bindings)", times)

        # The error path: the arguments cross, the product is unknown, nothing is written.
        def refused(line):
            try:
                store.record_inventory(visit, "no-such-product", line)
            except fs.FieldsyncError.NotFound:
                pass
            else:
                raise AssertionError("an unknown product was accepted")

        times = []
        for i in range(calls):
            line = fs.InventoryInput(shelf_qty=i % 17, facings=2)
            start = time.perf_counter()
            refused(line)
            times.append(time.perf_counter() - start)
        report("record_inventory error path (Python bindings)", times)

        # The same error path, each time right after a durable call (not timed): what the
        # crossing costs once the library's real work has been through the caches.
        times = []
        for i in range(calls):
            line = fs.InventoryInput(shelf_qty=i % 17, facings=2)
            store.record_inventory(visit, products[i % len(products)], line)
            start = time.perf_counter()
            refused(line)
            times.append(time.perf_counter() - start)
        report("record_inventory error path after a durable call (Python bindings)", times)

        times = []
        for _ in range(calls):
            start = time.perf_counter()
            store.now()
            times.append(time.perf_counter() - start)
        report("now() (Python bindings)", times)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
