"""What a run writes as it trains: a JSON-lines record, VisualDL scalars and the config."""

import json
import os

import yaml


class RunLog:
    """VisualDL scalars and a JSON-lines record, on rank 0 only.

    Files are opened at the first record, so a run that fails on its first batch leaves
    save_dir as it found it; the resolved config is then written beside them (config.yml,
    rather than printed); `header()` (what the model says about itself) is written first,
    and again whenever it has changed at a later record (a model may settle values, such as
    measured coefficients, while it trains).
    """

    def __init__(self, save_dir, use_vdl, enabled, header=None, config=None):
        self.save_dir = save_dir
        self.config = config
        self.use_vdl = use_vdl
        self.enabled = enabled
        self.header = header
        self.written_header = None
        self.vdl = None
        self.jsonl = None

    def record(self, iteration, tag, values):
        if not self.enabled:
            return
        if self.jsonl is None:
            os.makedirs(self.save_dir, exist_ok=True)
            self.jsonl = open(os.path.join(self.save_dir, 'train_log.jsonl'), 'a')
            if self.config is not None:
                with open(os.path.join(self.save_dir, 'config.yml'), 'w') as handle:
                    yaml.safe_dump(self.config, handle, sort_keys=False)
            if self.use_vdl:
                from visualdl import LogWriter

                self.vdl = LogWriter(self.save_dir)
        if self.header is not None:
            header = self.header()
            if header and header != self.written_header:
                self.jsonl.write(json.dumps({'iter': iteration, 'tag': 'Run', **header}) + '\n')
                self.written_header = header
        if self.vdl is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self.vdl.add_scalar(f'{tag}/{key}', value, iteration)
        self.jsonl.write(json.dumps({'iter': iteration, 'tag': tag, **values}) + '\n')
        self.jsonl.flush()

    def close(self):
        if self.vdl is not None:
            self.vdl.close()
        if self.jsonl is not None:
            self.jsonl.close()
