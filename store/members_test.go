package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

func TestMembers(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		s := mustOpen(t, cfg)
		rm, err := s.CreateRoomBy(ctx, "team", "alice")
		if err != nil {
			t.Fatal(err)
		}
		acc, err := s.RoomAccess(ctx, rm.ID)
		if err != nil || acc.CreatedBy != "alice" || len(acc.Members) != 0 {
			t.Fatalf("access of a new room: %+v, %v", acc, err)
		}
		if created, err := s.SetMember(ctx, rm.ID, "bob", "viewer", nil); err != nil || !created {
			t.Fatalf("SetMember bob: %v, %v", created, err)
		}
		if created, err := s.SetMember(ctx, rm.ID, "bob", "editor", nil); err != nil || created {
			t.Fatalf("SetMember bob again: %v, %v", created, err)
		}
		if _, err := s.SetMember(ctx, rm.ID, "carol", "owner", nil); err != nil {
			t.Fatal(err)
		}
		acc, err = s.RoomAccess(ctx, rm.ID)
		if err != nil || acc.Members["bob"] != "editor" || acc.Members["carol"] != "owner" || len(acc.Members) != 2 {
			t.Fatalf("access: %+v, %v", acc, err)
		}
		ms, err := s.Members(ctx, rm.ID)
		if err != nil || len(ms) != 2 || ms[0].Subject != "bob" || ms[0].Role != "editor" || ms[1].Subject != "carol" {
			t.Fatalf("members: %+v, %v", ms, err)
		}
		if !ms[0].UpdatedAt.After(ms[0].CreatedAt) && !ms[0].UpdatedAt.Equal(ms[0].CreatedAt) {
			t.Errorf("updated_at %v before created_at %v", ms[0].UpdatedAt, ms[0].CreatedAt)
		}

		// Listing: alice created it, bob is a member, dave names it in his
		// token, erin has nothing.
		other, _ := s.CreateRoomBy(ctx, "other", "zed")
		for _, c := range []struct {
			sub   string
			token []string
			want  int
		}{{"alice", nil, 1}, {"bob", nil, 1}, {"dave", []string{rm.ID, "not-a-uuid"}, 1}, {"erin", nil, 0}, {"zed", []string{rm.ID}, 2}} {
			rooms, _, err := s.ListRoomsFor(ctx, c.sub, c.token, 10, "")
			if err != nil || len(rooms) != c.want {
				t.Errorf("ListRoomsFor(%s) = %d rooms, %v; want %d", c.sub, len(rooms), err, c.want)
			}
		}
		rooms, next, err := s.ListRoomsFor(ctx, "zed", []string{rm.ID}, 1, "")
		if err != nil || len(rooms) != 1 || rooms[0].ID != other.ID || next == "" {
			t.Fatalf("first page: %v %q %v", rooms, next, err)
		}
		rooms, next, err = s.ListRoomsFor(ctx, "zed", []string{rm.ID}, 1, next)
		if err != nil || len(rooms) != 1 || rooms[0].ID != rm.ID || next != "" {
			t.Fatalf("second page: %v %q %v", rooms, next, err)
		}

		if err := s.RemoveMember(ctx, rm.ID, "bob", nil); err != nil {
			t.Fatal(err)
		}
		if err := s.RemoveMember(ctx, rm.ID, "bob", nil); !errors.Is(err, store.ErrMemberNotFound) {
			t.Errorf("removing bob twice: %v, want ErrMemberNotFound", err)
		}
		missing := uuid.NewString()
		if _, err := s.SetMember(ctx, missing, "bob", "viewer", nil); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("SetMember on a missing room: %v", err)
		}
		if err := s.RemoveMember(ctx, missing, "bob", nil); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RemoveMember on a missing room: %v", err)
		}
		if _, err := s.Members(ctx, missing); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Members of a missing room: %v", err)
		}
		if _, err := s.RoomAccess(ctx, missing); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RoomAccess of a missing room: %v", err)
		}
		if _, err := s.SetMember(ctx, rm.ID, "bob", "admin", nil); err == nil {
			t.Error("the database took the role admin for a member")
		}

		// Deleting the room deletes its members.
		if err := s.DeleteRoom(ctx, rm.ID, nil); err != nil {
			t.Fatal(err)
		}
		if rooms, _, _ := s.ListRoomsFor(ctx, "carol", nil, 10, ""); len(rooms) != 0 {
			t.Errorf("carol still lists %d rooms after the delete", len(rooms))
		}
	})
}
