"""The examples of cottoncandy 0.4.0's README, as a user's script (unchanged 0.4.0 code).

Usage: readme_tour.py BUCKET_OR_DIRECTORY s3|local. Credentials and the
endpoint come from the user's ~/.config/cottoncandy/options.cfg and
~/.passwd-s3fs, as they did for 0.4.0. Checked under cottoncandy 0.4.0 itself
against rclone serve s3: it passes but for two 0.4.0 bugs, the README's own
config= example (0.4.0 sets the Config's signature version to the empty
string its options.cfg holds, and botocore refuses it) and, on a local store,
glob patterns whose literal part ends inside a name ('file02*'). Its dask
part was not run there (that 0.4.0 install has no dask).
"""
import sys

import numpy as np
from botocore.client import Config

import cottoncandy as cc

bucket, backend = sys.argv[1], sys.argv[2]

# "Connection settings (S3 only)"
if backend == 's3':
    config = Config(connect_timeout=60, read_timeout=60, retries=dict(max_attempts=10))
    cci = cc.get_interface(bucket, config=config)
else:
    cci = cc.get_interface(bucket, backend='local')

# "Storing numpy arrays"
arr = np.random.randn(100)
s3_response = cci.upload_raw_array('myarray', arr)
arr_down = cci.download_raw_array('myarray')
assert np.allclose(arr, arr_down)

# "Storing dask arrays" (smaller than the README's 100 x 600 x 1000)
arr = np.random.randn(10, 60, 100)
s3_response = cci.upload_dask_array('test_dim', arr, axis=-1)
dask_object = cci.download_dask_array('test_dim')
dask_slice = dask_object[..., :20]
downloaded_data = np.asarray(dask_slice)  # this downloads the array
assert downloaded_data.shape == (10, 60, 20)
assert np.allclose(downloaded_data, arr[..., :20])

# "Command-line search"
for who in ['my', 'your']:
    for name in ['file01a', 'file01b', 'file02a', 'file02b']:
        cci.upload_raw_array('/path/to/%s/%s.grp/image_data' % (who, name), np.arange(3))
        cci.upload_raw_array('/path/to/%s/%s.grp/text_data' % (who, name), np.arange(2))
found = cci.glob('/path/to/*/file01*.grp/image_data')
print(found)
assert found == ['path/to/my/file01a.grp/image_data',
                 'path/to/my/file01b.grp/image_data',
                 'path/to/your/file01a.grp/image_data',
                 'path/to/your/file01b.grp/image_data']
assert cci.glob('/path/to/my/file02*.grp/*') == ['path/to/my/file02a.grp/image_data',
                                                'path/to/my/file02a.grp/text_data',
                                                'path/to/my/file02b.grp/image_data',
                                                'path/to/my/file02b.grp/text_data']

# "File system-like object browsing"
browser = cci.get_browser()
group = browser.path.to.my.file01a_DOT_grp
print(group)
assert np.allclose(group.image_data.load(), np.arange(3))
assert np.allclose(group.load('text_data'), np.arange(2))
assert sorted(group.keys()) == ['image_data', 'text_data']
assert group._glob() == ['path/to/my/file01a.grp/image_data', 'path/to/my/file01a.grp/text_data']
print('done')
