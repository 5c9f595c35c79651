package main

import (
	"context"
	"errors"
	"strconv"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Volumes have no real size limit; a volume reports the capacity it was asked for.
const defaultCapacity = 1 << 30

// rpcError maps store errors to gRPC codes.
func rpcError(err error, what string) error {
	if errors.Is(err, errNotFound) {
		return status.Errorf(codes.NotFound, "%s not found", what)
	}
	return status.Errorf(codes.Internal, "%s: %v", what, err)
}

func checkCapabilities(caps []*csi.VolumeCapability) error {
	for _, c := range caps {
		if c.GetBlock() != nil {
			return status.Error(codes.InvalidArgument, "block volumes are not supported")
		}
	}
	return nil
}

func (d *driver) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, t := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
	} {
		caps = append(caps, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: t}},
		})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

func (d *driver) CreateVolume(_ context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	id := req.GetName()
	if err := checkID(id); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume capabilities are required")
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return nil, err
	}
	capacity := req.GetCapacityRange().GetRequiredBytes()
	if capacity == 0 {
		capacity = defaultCapacity
	}
	source := ""
	src := req.GetVolumeContentSource()
	d.store.mu.Lock()
	defer d.store.mu.Unlock()
	switch {
	case src.GetSnapshot() != nil:
		sid := src.GetSnapshot().GetSnapshotId()
		snap, err := d.store.snapshot(sid)
		if err != nil {
			return nil, rpcError(err, "snapshot "+sid)
		}
		if capacity < snap.SizeBytes {
			return nil, status.Errorf(codes.OutOfRange, "snapshot %s needs at least %d bytes", sid, snap.SizeBytes)
		}
		source = "snapshot:" + sid
	case src.GetVolume() != nil:
		vid := src.GetVolume().GetVolumeId()
		vol, err := d.store.volume(vid)
		if err != nil {
			return nil, rpcError(err, "volume "+vid)
		}
		if capacity < vol.CapacityBytes {
			return nil, status.Errorf(codes.OutOfRange, "volume %s needs at least %d bytes", vid, vol.CapacityBytes)
		}
		source = "volume:" + vid
	}
	if existing, err := d.store.volume(id); err == nil {
		// a retry of a call that succeeded
		if existing.Source != source || existing.CapacityBytes != capacity {
			return nil, status.Errorf(codes.AlreadyExists, "volume %s exists with another source or size", id)
		}
	} else if !errors.Is(err, errNotFound) {
		return nil, rpcError(err, "volume "+id)
	} else if err := d.store.createVolume(id, capacity, source); err != nil {
		return nil, rpcError(err, "creating volume "+id)
	}
	return &csi.CreateVolumeResponse{Volume: &csi.Volume{
		VolumeId:      id,
		CapacityBytes: capacity,
		ContentSource: src,
	}}, nil
}

func (d *driver) DeleteVolume(_ context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	if err := checkID(req.GetVolumeId()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	d.store.mu.Lock()
	defer d.store.mu.Unlock()
	if err := d.store.deleteVolume(req.GetVolumeId()); err != nil {
		return nil, rpcError(err, "deleting volume "+req.GetVolumeId())
	}
	return &csi.DeleteVolumeResponse{}, nil
}

func (d *driver) ValidateVolumeCapabilities(_ context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if _, err := d.store.volume(req.GetVolumeId()); err != nil {
		return nil, rpcError(err, "volume "+req.GetVolumeId())
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeCapabilities: req.GetVolumeCapabilities(),
	}}, nil
}

func snapshotProto(id string, m snapshotMeta) *csi.Snapshot {
	return &csi.Snapshot{
		SnapshotId:      id,
		SourceVolumeId:  m.SourceVolumeID,
		CreationTime:    timestamppb.New(m.CreationTime),
		SizeBytes:       m.SizeBytes,
		ReadyToUse:      true,
		GroupSnapshotId: m.GroupID,
	}
}

// createSnapshotLocked is CreateSnapshot for one volume, also used for the members of a group
// snapshot. Idempotent: a snapshot of the same name and source is returned as it is.
func (d *driver) createSnapshotLocked(id, volumeID, groupID string) (*csi.Snapshot, error) {
	if err := checkID(id); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if volumeID == "" {
		return nil, status.Error(codes.InvalidArgument, "source volume id is required")
	}
	if m, err := d.store.snapshot(id); err == nil {
		if m.SourceVolumeID != volumeID {
			return nil, status.Errorf(codes.AlreadyExists, "snapshot %s exists for volume %s", id, m.SourceVolumeID)
		}
		return snapshotProto(id, m), nil
	} else if !errors.Is(err, errNotFound) {
		return nil, rpcError(err, "snapshot "+id)
	}
	m, err := d.store.createSnapshot(id, volumeID, groupID)
	if err != nil {
		return nil, rpcError(err, "snapshot of volume "+volumeID)
	}
	return snapshotProto(id, m), nil
}

func (d *driver) CreateSnapshot(_ context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	d.store.mu.Lock()
	defer d.store.mu.Unlock()
	snap, err := d.createSnapshotLocked(req.GetName(), req.GetSourceVolumeId(), "")
	if err != nil {
		return nil, err
	}
	return &csi.CreateSnapshotResponse{Snapshot: snap}, nil
}

func (d *driver) DeleteSnapshot(_ context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	if err := checkID(req.GetSnapshotId()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	d.store.mu.Lock()
	defer d.store.mu.Unlock()
	if err := d.store.deleteSnapshot(req.GetSnapshotId()); err != nil {
		return nil, rpcError(err, "deleting snapshot "+req.GetSnapshotId())
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

// ListSnapshots filters by snapshot id or source volume id; the token is an offset.
func (d *driver) ListSnapshots(_ context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	d.store.mu.Lock()
	all, ids, err := d.store.snapshots()
	d.store.mu.Unlock()
	if err != nil {
		return nil, rpcError(err, "listing snapshots")
	}
	var entries []*csi.ListSnapshotsResponse_Entry
	for _, id := range ids {
		m := all[id]
		if (req.GetSnapshotId() != "" && id != req.GetSnapshotId()) ||
			(req.GetSourceVolumeId() != "" && m.SourceVolumeID != req.GetSourceVolumeId()) {
			continue
		}
		entries = append(entries, &csi.ListSnapshotsResponse_Entry{Snapshot: snapshotProto(id, m)})
	}
	start := 0
	if t := req.GetStartingToken(); t != "" {
		if start, err = strconv.Atoi(t); err != nil || start < 0 || start > len(entries) {
			return nil, status.Errorf(codes.Aborted, "invalid starting token %q", t)
		}
	}
	entries = entries[start:]
	next := ""
	if max := int(req.GetMaxEntries()); max > 0 && len(entries) > max {
		entries = entries[:max]
		next = strconv.Itoa(start + max)
	}
	return &csi.ListSnapshotsResponse{Entries: entries, NextToken: next}, nil
}
