package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// store keeps everything as files under one root:
//
//	volumes/<id>/        the volume's files (bind-mounted into pods)
//	volumes/<id>.json    volumeMeta
//	snapshots/<id>/      a copy of a volume's files, made by CreateSnapshot
//	snapshots/<id>.json  snapshotMeta
//	groups/<id>.json     groupMeta: the member snapshots of a group snapshot
//
// A directory appears under its final name only when complete (copied to <id>.tmp, then
// renamed), and its metadata file is written after it. One lock serializes all changes.
type store struct {
	root string
	mu   sync.Mutex
}

type volumeMeta struct {
	CapacityBytes int64  `json:"capacityBytes"`
	Source        string `json:"source,omitempty"` // "snapshot:<id>" or "volume:<id>"
}

type snapshotMeta struct {
	SourceVolumeID string    `json:"sourceVolumeID"`
	CreationTime   time.Time `json:"creationTime"`
	SizeBytes      int64     `json:"sizeBytes"`
	GroupID        string    `json:"groupID,omitempty"`
}

type groupMeta struct {
	CreationTime time.Time `json:"creationTime"`
	SnapshotIDs  []string  `json:"snapshotIDs"`
}

var errNotFound = errors.New("not found")

// IDs are the names the sidecars give (pvc-<uid>, snapshot-<uid>, groupsnapshot-<uid>).
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$`)

func checkID(id string) error {
	if !validID.MatchString(id) || strings.Contains(id, "..") {
		return fmt.Errorf("invalid id %q", id)
	}
	return nil
}

func openStore(root string) (*store, error) {
	for _, d := range []string{"volumes", "snapshots", "groups"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			return nil, err
		}
	}
	return &store{root: root}, nil
}

func (s *store) volumeDir(id string) string   { return filepath.Join(s.root, "volumes", id) }
func (s *store) snapshotDir(id string) string { return filepath.Join(s.root, "snapshots", id) }
func (s *store) groupFile(id string) string   { return filepath.Join(s.root, "groups", id+".json") }

// copyTree makes dst a copy of src as of now: `cp -a --reflink=auto` (shares blocks where the
// filesystem can, e.g. XFS or btrfs; a full copy elsewhere, e.g. ext4).
func copyTree(src, dst string) error {
	tmp := dst + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if out, err := exec.Command("cp", "-a", "--reflink=auto", src, tmp).CombinedOutput(); err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("cp %s: %v: %s", src, err, out)
	}
	return os.Rename(tmp, dst)
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return errNotFound
	}
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func (s *store) volume(id string) (volumeMeta, error) {
	var m volumeMeta
	return m, readJSON(s.volumeDir(id)+".json", &m)
}

func (s *store) snapshot(id string) (snapshotMeta, error) {
	var m snapshotMeta
	return m, readJSON(s.snapshotDir(id)+".json", &m)
}

func (s *store) group(id string) (groupMeta, error) {
	var m groupMeta
	return m, readJSON(s.groupFile(id), &m)
}

// createVolume makes an empty volume, or one filled from a snapshot or another volume
// (source "snapshot:<id>" / "volume:<id>", "" for none).
func (s *store) createVolume(id string, capacity int64, source string) error {
	dir := s.volumeDir(id)
	kind, from, _ := strings.Cut(source, ":")
	switch kind {
	case "":
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return err
		}
		// world-writable like local-path's volumes: pods of any user may write; fsGroup applies
		if err := os.Chmod(dir, 0o777); err != nil {
			return err
		}
	case "snapshot":
		if err := copyTree(s.snapshotDir(from), dir); err != nil {
			return err
		}
	case "volume":
		if err := copyTree(s.volumeDir(from), dir); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown source %q", source)
	}
	return writeJSON(dir+".json", volumeMeta{CapacityBytes: capacity, Source: source})
}

func (s *store) deleteVolume(id string) error {
	if err := os.RemoveAll(s.volumeDir(id)); err != nil {
		return err
	}
	return removeIfExists(s.volumeDir(id) + ".json")
}

// createSnapshot copies a volume's files now; the snapshot's creation time is taken before the
// copy starts. The copy is point-in-time only for files nobody writes during the copy (a
// directory tree cannot be frozen): quiesce writers first, as with any crash-consistent snapshot.
func (s *store) createSnapshot(id, volumeID, groupID string) (snapshotMeta, error) {
	vol, err := s.volume(volumeID)
	if err != nil {
		return snapshotMeta{}, err
	}
	m := snapshotMeta{SourceVolumeID: volumeID, CreationTime: time.Now().UTC(), SizeBytes: vol.CapacityBytes, GroupID: groupID}
	if err := copyTree(s.volumeDir(volumeID), s.snapshotDir(id)); err != nil {
		return snapshotMeta{}, err
	}
	return m, writeJSON(s.snapshotDir(id)+".json", m)
}

func (s *store) deleteSnapshot(id string) error {
	if err := os.RemoveAll(s.snapshotDir(id)); err != nil {
		return err
	}
	return removeIfExists(s.snapshotDir(id) + ".json")
}

// snapshots lists all snapshots, ordered by id.
func (s *store) snapshots() (map[string]snapshotMeta, []string, error) {
	files, err := filepath.Glob(filepath.Join(s.root, "snapshots", "*.json"))
	if err != nil {
		return nil, nil, err
	}
	all := map[string]snapshotMeta{}
	ids := []string{}
	for _, f := range files {
		id := strings.TrimSuffix(filepath.Base(f), ".json")
		m, err := s.snapshot(id)
		if err != nil {
			return nil, nil, err
		}
		all[id] = m
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return all, ids, nil
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
