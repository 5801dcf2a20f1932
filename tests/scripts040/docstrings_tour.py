"""A lab script written against cottoncandy 0.4.0's docstrings (unchanged 0.4.0 code).

Usage: docstrings_tour.py BUCKET_OR_DIRECTORY s3|local. Credentials and the
endpoint come from the user's ~/.config/cottoncandy/options.cfg and
~/.passwd-s3fs, as they did for 0.4.0. Checked under cottoncandy 0.4.0 itself
against rclone serve s3: it passes. (0.4.0's local backend fails it: cp
without overwrite raises NotImplementedError, and download_to_file of a file
sent with upload_from_file finds no metadata sidecar.)
"""
import os
import sys
import tempfile
from io import BytesIO

import numpy as np

import cottoncandy as cc

bucket, backend = sys.argv[1], sys.argv[2]
if backend == 's3':
    cci = cc.get_interface(bucket, verbose=False)
else:
    cci = cc.get_interface(bucket, backend='local', verbose=False)

# arrays, with and without compression, and their metadata
arr = np.random.randn(50, 40)
cci.upload_raw_array('data/experiment/raw', arr, compression=False)
cci.upload_raw_array('data/experiment/zipped', arr, compression='gzip')
cci.upload_raw_array('data/experiment/default', arr)
for name in ['raw', 'zipped', 'default']:
    assert np.allclose(cci.download_raw_array('data/experiment/' + name), arr)
cci.upload_npy_array('data/experiment/arr.npy', arr)
assert np.allclose(cci.download_npy_array('data/experiment/arr.npy'), arr)

# json, pickle, plain objects
cci.upload_json('data/experiment/info.json', {'subject': 'S01', 'runs': [1, 2]})
assert cci.download_json('data/experiment/info.json')['runs'] == [1, 2]
cci.upload_pickle('data/experiment/params.pkl', {'alpha': 0.5})
assert cci.download_pickle('data/experiment/params.pkl') == {'alpha': 0.5}
cci.upload_object('data/experiment/file01.txt', BytesIO(b'hello'))
assert cci.download_object('data/experiment/file01.txt') == b'hello'
assert cci.exists_object('data/experiment/file01.txt')
assert not cci.exists_object('data/experiment/nothing.txt')

# groups of arrays
cci.dict2cloud('project/sub01.grp', {'image_data': arr, 'text_data': np.arange(5)})
group = cci.cloud2dict('project/sub01.grp')
assert sorted(group) == ['image_data', 'text_data'] and np.allclose(group['image_data'], arr)
assert cci.glob('project/sub01.grp') == ['project/sub01.grp/image_data', 'project/sub01.grp/text_data']
assert sorted(cci.lsdir('project/sub01.grp')) == ['project/sub01.grp/image_data', 'project/sub01.grp/text_data']

# files and directories on disk
with tempfile.TemporaryDirectory() as tmp:
    with open(os.path.join(tmp, 'notes.txt'), 'w') as fl:
        fl.write('notes')
    cci.upload_from_file(os.path.join(tmp, 'notes.txt'), object_name='docs/notes.txt')
    cci.download_to_file('docs/notes.txt', os.path.join(tmp, 'back.txt'))
    with open(os.path.join(tmp, 'back.txt')) as fl:
        assert fl.read() == 'notes'

# copy, move, remove (rm's docstring example)
cci.cp('data/experiment/file01.txt', 'data/copy.txt')
cci.mv('data/copy.txt', 'data/moved.txt')
assert cci.exists_object('data/moved.txt') and not cci.exists_object('data/copy.txt')
response = cci.rm('data/experiment/file01.txt')
assert not cci.exists_object('data/experiment/file01.txt')
cci.rm('data/experiment')        # a directory: only with recursive=True
assert cci.exists_object('data/experiment/raw')
cci.rm('data/experiment', recursive=True)
assert cci.glob('data/experiment/*') == []
assert cci.exists_object('data/moved.txt')

# the lower-level methods
if backend == 's3':
    keys = [ob.key for ob in cci.get_objects()]
    assert 'data/moved.txt' in keys and 'project/sub01.grp/image_data' in keys
    assert cci.get_object('data/moved.txt').content_length == 5
    assert cci.backend_interface.bucket_name == bucket
    cci.show_objects()
    assert cci.glob_s3('docs/*') == ['docs/notes.txt']
    assert cci.get_bucket_size() == sum(ob.size for ob in cci.get_objects())
print('done')
